using BenchmarkDotNet.Attributes;
using OR1.Native;

namespace OR1.Bench.Kernels;

/// <summary>
/// The elementwise and data-movement family (kernels/elementwise.cu, Cpu/Elementwise.cs,
/// Ilgpu/Elementwise.cs) over [tokens, hidden]: fill, copy, add (the residual), scale, the QKV bias and
/// its gradient (column sums), and the row gather/scatter that packs sequences. Copy is the
/// reference the other memory-bound ops are read against.
/// <code>dotnet run -c Release --project bench/OR1.Bench -- --filter '*Elementwise*'</code>
/// </summary>
public class ElementwiseBenchmarks : KernelBenchmark
{
    private Tensor _a = null!, _b = null!, _c = null!, _bias = null!, _dBias = null!, _rows = null!;
    private bool _flip;

    private long RowBytes => (long)Model.Hidden * sizeof(float);

    private int Rows => Scale.RowsFor(3 * RowBytes);

    protected override void Allocate(Random random)
    {
        _a = Floats(random, Rows, Model.Hidden);
        _b = Floats(random, Rows, Model.Hidden);
        _c = Zeros(new TensorShape(Rows, Model.Hidden));
        _bias = Floats(random, Model.Hidden);
        _dBias = Zeros(new TensorShape(Model.Hidden));
        // A permutation: every destination row written once, in an order caches cannot predict.
        var order = Enumerable.Range(0, Rows).ToArray();
        random.Shuffle(order);
        _rows = Ints(order);
    }

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Fill() => Repeat<ElementwiseBenchmarks>(static b => b.Backend.Fill(b._c, 0.5f));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Copy() => Repeat<ElementwiseBenchmarks>(static b => b.Backend.Copy(b._a, b._c));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Add() => Repeat<ElementwiseBenchmarks>(static b => b.Backend.Add(b._a, b._b, b._c));

    // Alternating factors keep the values bounded over any number of launches.
    [Benchmark(OperationsPerInvoke = Launches)]
    public void ScaleInPlace() => Repeat<ElementwiseBenchmarks>(static b => b.Backend.Scale(b._c, (b._flip = !b._flip) ? 2f : 0.5f));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void AddBias() => Repeat<ElementwiseBenchmarks>(static b => b.Backend.AddBias(b._c, b._bias));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void BiasBackward() => Repeat<ElementwiseBenchmarks>(static b => b.Backend.BiasBackward(b._a, b._dBias));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void GatherRows() => Repeat<ElementwiseBenchmarks>(static b => b.Backend.GatherRows(b._a, b._rows, b._c));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void ScatterRows() => Repeat<ElementwiseBenchmarks>(static b => b.Backend.ScatterRows(b._a, b._rows, b._c));

    public override long BytesMoved(string method)
    {
        long plane = Rows * RowBytes, indices = (long)Rows * sizeof(int);
        return method switch
        {
            nameof(Fill) => plane,
            nameof(Copy) or nameof(ScaleInPlace) or nameof(AddBias) => 2 * plane,
            nameof(Add) => 3 * plane,
            nameof(BiasBackward) => plane,
            nameof(GatherRows) or nameof(ScatterRows) => 2 * plane + indices,
            _ => 0,
        };
    }

    public override double Flops(string method) => 0;
}

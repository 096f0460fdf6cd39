using BenchmarkDotNet.Attributes;
using OR1.Native;

namespace OR1.Bench.Kernels;

/// <summary>
/// SwiGLU, silu(gate) * up over [tokens, intermediate] (kernels/swiglu.cu, Cpu/SwiGlu.cs,
/// Ilgpu/SwiGlu.cs). Memory-bound: forward reads two planes and writes one; backward reads three
/// (dOut, gate, up) and writes two.
/// <code>dotnet run -c Release --project bench/OR1.Bench -- --filter '*SwiGlu*'</code>
/// </summary>
public class SwiGluBenchmarks : KernelBenchmark
{
    private Tensor _gate = null!, _up = null!, _out = null!, _dOut = null!, _dGate = null!, _dUp = null!;

    private long PlaneRowBytes => (long)Model.Intermediate * sizeof(float);

    private int Rows => Scale.RowsFor(3 * PlaneRowBytes);

    protected override void Allocate(Random random)
    {
        var shape = new TensorShape(Rows, Model.Intermediate);
        _gate = Floats(random, shape, 4f);
        _up = Floats(random, shape);
        _out = Zeros(shape);
        _dOut = Floats(random, shape);
        _dGate = Zeros(shape);
        _dUp = Zeros(shape);
    }

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Forward() => Repeat<SwiGluBenchmarks>(static b => b.Backend.SwiGluForward(b._gate, b._up, b._out));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Backward() => Repeat<SwiGluBenchmarks>(static b => b.Backend.SwiGluBackward(b._dOut, b._gate, b._up, b._dGate, b._dUp));

    public override long BytesMoved(string method) => Rows * PlaneRowBytes * (method == nameof(Forward) ? 3 : 5);

    public override double Flops(string method) => 0;
}

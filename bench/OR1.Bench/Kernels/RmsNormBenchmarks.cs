using BenchmarkDotNet.Attributes;
using OR1.Native;

namespace OR1.Bench.Kernels;

/// <summary>
/// RMSNorm over [tokens, hidden] (kernels/rmsnorm.cu, Cpu/RmsNorm.cs, Ilgpu/RmsNorm.cs): memory-bound,
/// so GB/s counts the bytes a perfect kernel must move (forward: read x, write y and 1/rms; backward:
/// read dy, x and 1/rms, write dx; the weight and its gradient are one row and negligible).
/// <code>dotnet run -c Release --project bench/OR1.Bench -- --filter '*RmsNorm*'</code>
/// </summary>
public class RmsNormBenchmarks : KernelBenchmark
{
    private Tensor _x = null!, _w = null!, _y = null!, _invRms = null!, _dy = null!, _dx = null!, _dw = null!;

    private long RowBytes => (long)Model.Hidden * sizeof(float);

    private int Rows => Scale.RowsFor(2 * RowBytes);

    protected override void Allocate(Random random)
    {
        _x = Floats(random, Rows, Model.Hidden);
        _w = Floats(random, Model.Hidden);
        _y = Zeros(new TensorShape(Rows, Model.Hidden));
        _invRms = Zeros(new TensorShape(Rows));
        _dy = Floats(random, Rows, Model.Hidden);
        _dx = Zeros(new TensorShape(Rows, Model.Hidden));
        _dw = Zeros(new TensorShape(Model.Hidden));
        Backend.RmsNormForward(_x, _w, 1e-6f, _y, _invRms);
    }

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Forward() => Repeat<RmsNormBenchmarks>(static b => b.Backend.RmsNormForward(b._x, b._w, 1e-6f, b._y, b._invRms));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Backward() => Repeat<RmsNormBenchmarks>(static b => b.Backend.RmsNormBackward(b._dy, b._x, b._w, b._invRms, b._dx, b._dw));

    public override long BytesMoved(string method) => method switch
    {
        nameof(Forward) => Rows * (2 * RowBytes + sizeof(float)),
        nameof(Backward) => Rows * (3 * RowBytes + sizeof(float)),
        _ => 0,
    };

    public override double Flops(string method) => 0;
}

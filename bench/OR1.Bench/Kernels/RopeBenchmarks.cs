using BenchmarkDotNet.Attributes;
using OR1.Native;

namespace OR1.Bench.Kernels;

/// <summary>
/// Rotary embedding of the query heads (kernels/rope.cu, Cpu/Rope.cs, Ilgpu/Rope.cs), forward and its
/// inverse rotation for the backward, with Qwen2's theta 1e6 and positions cycling through a 4K context.
/// Memory-bound: GB/s counts reading the rows and positions and writing the rows.
/// <code>dotnet run -c Release --project bench/OR1.Bench -- --filter '*Rope*'</code>
/// </summary>
public class RopeBenchmarks : KernelBenchmark
{
    private const float Theta = 1_000_000f;
    private Tensor _x = null!, _y = null!, _positions = null!;

    private long RowBytes => (long)Model.Heads.QueryWidth * sizeof(float);

    private int Rows => Scale.RowsFor(2 * RowBytes);

    protected override void Allocate(Random random)
    {
        _x = Floats(random, Rows, Model.Heads.QueryWidth);
        _y = Zeros(new TensorShape(Rows, Model.Heads.QueryWidth));
        _positions = Ints(Enumerable.Range(0, Rows).Select(i => i % 4096).ToArray());
    }

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Forward() => Repeat<RopeBenchmarks>(static b => b.Backend.RopeForward(b._x, b._positions, b.Model.Heads.NumHeads, b.Model.Heads.HeadDim, Theta, b._y));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Backward() => Repeat<RopeBenchmarks>(static b => b.Backend.RopeBackward(b._x, b._positions, b.Model.Heads.NumHeads, b.Model.Heads.HeadDim, Theta, b._y));

    public override long BytesMoved(string method) => Rows * (2 * RowBytes + sizeof(int));

    public override double Flops(string method) => 0;
}

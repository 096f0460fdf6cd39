using BenchmarkDotNet.Attributes;
using OR1.Native;

namespace OR1.Bench.Kernels;

/// <summary>
/// The fused AdamW step (kernels/adamw.cu, Cpu/AdamW.cs, Ilgpu/AdamW.cs) over the seven projection
/// weights of one decoder layer (row counts scaled down where the backend's traffic budget needs it),
/// as one multi-tensor call. Memory-bound: reads parameter, gradient and both moments, writes
/// parameter and moments, 28 bytes per parameter.
/// <code>dotnet run -c Release --project bench/OR1.Bench -- --filter '*AdamW*'</code>
/// </summary>
public class AdamWBenchmarks : KernelBenchmark
{
    private const int BytesPerParameter = 7 * sizeof(float);
    private AdamWSlot[] _slots = [];
    private int _step;

    private IReadOnlyList<(int Rows, int Columns)> Shapes => Model.LayerWeightsWithin(Scale.TrafficBytes, BytesPerParameter);

    protected override void Allocate(Random random) =>
        _slots = Shapes.Select(s => new AdamWSlot(
            Floats(random, s.Rows, s.Columns, 0.05f), Floats(random, s.Rows, s.Columns, 1e-3f),
            Zeros(new TensorShape(s.Rows, s.Columns)), Zeros(new TensorShape(s.Rows, s.Columns)))).ToArray();

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Step() => Repeat<AdamWBenchmarks>(static b => b.Backend.AdamWStep(b._slots, new AdamWOptions(1e-6), ++b._step, 1f));

    public override long BytesMoved(string method) => Shapes.Sum(s => (long)s.Rows * s.Columns) * BytesPerParameter;

    public override double Flops(string method) => 0;
}

using BenchmarkDotNet.Attributes;
using OR1.Native;

namespace OR1.Bench.Kernels;

/// <summary>
/// The global gradient norm (kernels/reduce.cu, Cpu/Reduce.cs, Ilgpu/Reduce.cs) over the seven
/// projection gradients of one decoder layer (row counts scaled down where the backend's traffic budget
/// needs it). It returns a host scalar, so every launch ends in a device-to-host read.
/// <code>dotnet run -c Release --project bench/OR1.Bench -- --filter '*Reduce*'</code>
/// </summary>
public class ReduceBenchmarks : KernelBenchmark
{
    private Tensor[] _gradients = [];

    private IReadOnlyList<(int Rows, int Columns)> Shapes => Model.LayerWeightsWithin(Scale.TrafficBytes, sizeof(float));

    protected override void Allocate(Random random) =>
        _gradients = Shapes.Select(s => Floats(random, s.Rows, s.Columns, 1e-3f)).ToArray();

    [Benchmark(OperationsPerInvoke = Launches)]
    public float GlobalNorm()
    {
        float norm = 0;
        for (int i = 0; i < Launches; i++) norm += Backend.GlobalNorm(_gradients);
        return norm;
    }

    public override long BytesMoved(string method) => Shapes.Sum(s => (long)s.Rows * s.Columns) * sizeof(float);

    public override double Flops(string method) => 0;
}

using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using OR1.Bench.Baselines;
using OR1.Native;
using OR1.Native.Cpu;

namespace OR1.Bench.Kernels;

/// <summary>
/// The Cpu backend's sampler against the one it replaced (<see cref="CpuSamplingBefore"/>, issue 19), in the same
/// process on the same logits, so the Ratio column (current time / previous time, per mode) and the % peak column
/// compare under one measured copy bandwidth. Modes and data as <see cref="SamplingBenchmarks"/>.
/// <code>dotnet run -c Release --project bench/OR1.Bench -- --filter '*SamplingVsBefore*'</code>
/// </summary>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public unsafe class SamplingVsBeforeBenchmarks : KernelBenchmark
{
    private Tensor _logits = null!, _tokens = null!, _logProbs = null!;
    private ulong _counter;
    private SamplingOptions _options;

    public override IEnumerable<KernelCase> Cases() => KernelCase.ForModels().Where(c => c.Backend == "cpu");

    protected override void Allocate(Random random)
    {
        _logits = Floats(random, Scale.SampleRows, Model.Vocab, 8f);
        _tokens = Ints(new int[Scale.SampleRows]);
        _logProbs = Zeros(new TensorShape(Scale.SampleRows));
    }

    private void Current(SamplingOptions options)
    {
        _options = options;
        Repeat<SamplingVsBeforeBenchmarks>(static b => b.Backend.Sample(b._logits, b._options, 1234, ++b._counter, b._tokens, b._logProbs));
    }

    private void Before(SamplingOptions options)
    {
        // The previous sampler is the Cpu backend's; on another backend (the harness's own tests run every family on the
        // emulator too) there is nothing earlier to time, so the current one runs.
        if (Backend is not CpuBackend)
        {
            Current(options);
            return;
        }
        _options = options;
        Repeat<SamplingVsBeforeBenchmarks>(static b => CpuSamplingBefore.Sample((float*)b._logits.DevicePointer, b._logits.Shape[0], b._logits.Shape[1],
            b._options, 1234, ++b._counter, (int*)b._tokens.DevicePointer, (float*)b._logProbs.DevicePointer));
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Launches), BenchmarkCategory("Rollout")]
    public void RolloutBefore() => Before(new SamplingOptions(1f));

    [Benchmark(OperationsPerInvoke = Launches), BenchmarkCategory("Rollout")]
    public void Rollout() => Current(new SamplingOptions(1f));

    [Benchmark(Baseline = true, OperationsPerInvoke = Launches), BenchmarkCategory("TopP")]
    public void TopPBefore() => Before(new SamplingOptions(1f, 0.95f));

    [Benchmark(OperationsPerInvoke = Launches), BenchmarkCategory("TopP")]
    public void TopP() => Current(new SamplingOptions(1f, 0.95f));

    [Benchmark(Baseline = true, OperationsPerInvoke = Launches), BenchmarkCategory("TopK")]
    public void TopKBefore() => Before(new SamplingOptions(1f, TopK: 50));

    [Benchmark(OperationsPerInvoke = Launches), BenchmarkCategory("TopK")]
    public void TopK() => Current(new SamplingOptions(1f, TopK: 50));

    [Benchmark(Baseline = true, OperationsPerInvoke = Launches), BenchmarkCategory("Greedy")]
    public void GreedyBefore() => Before(new SamplingOptions(0f));

    [Benchmark(OperationsPerInvoke = Launches), BenchmarkCategory("Greedy")]
    public void Greedy() => Current(new SamplingOptions(0f));

    public override long BytesMoved(string method) => (long)Scale.SampleRows * Model.Vocab * sizeof(float);

    public override double Flops(string method) => 0;
}

using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using OR1.Bench.Baselines;
using OR1.Model;
using OR1.Model.Generation;
using OR1.Native;
using OR1.Native.Cpu;

namespace OR1.Bench.Model;

/// <summary>
/// The rollout engine (<see cref="Qwen2Generator"/>: continuous batching, shared prefill, inference arenas) beside the
/// generator it replaced (<see cref="Qwen2GeneratorBefore"/>: static batches that only shrink), on the Cpu backend with
/// <see cref="ModelBenchmarks.SmallConfig"/>, in the same process, so the Ratio column compares under one machine state.
/// <list type="bullet">
/// <item><c>LongTail</c>: 256 requests of 32-token prompts at max batch 64; 90 % stop after 32 tokens, 10 % after 256
/// (8 times the median): the static batches wait for their longest member, the engine refills the slots.</item>
/// <item><c>Groups</c>: bench/compare's generation case, 16 prompts x 4 samples, 32-token prompts, 224 new tokens at max
/// batch 64: every request has the same length, so what differs is the prefill (once per prompt instead of once per
/// sample) and the inference arenas.</item>
/// </list>
/// <code>dotnet run -c Release --project bench/OR1.Bench -- --filter '*RolloutEngine*'</code>
/// </summary>
[Config(typeof(TokenThroughputConfig))]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class RolloutEngineBenchmarks : ITokenThroughputBenchmark, IDisposable
{
    public const int MaxBatch = 64, PromptLength = 32;
    public const int LongTailRequests = 256, MedianTokens = 32, TailTokens = 8 * MedianTokens;
    public const int GroupPrompts = 16, GroupSamples = 4, GroupNewTokens = 224;

    private CpuBackend _backend = null!;
    private Qwen2Model _model = null!;
    private Qwen2Generator _engine = null!;
    private Qwen2GeneratorBefore _before = null!;
    private IReadOnlyList<int>[] _longTailPrompts = [], _groupPrompts = [];
    private int[] _limits = [];
    private ulong _seed;

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend();
        var config = ModelBenchmarks.SmallConfig;
        _model = new Qwen2Model(_backend, config);
        _model.Weights.InitializeRandom(1);
        _engine = new Qwen2Generator(_model, MaxBatch, PromptLength + TailTokens);
        _before = new Qwen2GeneratorBefore(_model, MaxBatch, PromptLength + TailTokens);
        var random = new Random(3);
        IReadOnlyList<int> Prompt() => Enumerable.Range(0, PromptLength).Select(_ => random.Next(config.VocabSize)).ToArray();
        _longTailPrompts = Enumerable.Range(0, LongTailRequests).Select(_ => Prompt()).ToArray();
        _limits = Enumerable.Range(0, LongTailRequests).Select(Limit).ToArray();
        _groupPrompts = Enumerable.Range(0, GroupPrompts).Select(_ => Prompt()).ToArray();
    }

    /// <summary>Every tenth request is a long one, spread over the queue as a real mix would be.</summary>
    private static int Limit(int request) => request % 10 == 7 ? TailTokens : MedianTokens;

    private GenerationOptions LongTail() =>
        new(TailTokens, new SamplingOptions(1f), [], 1, Seed: ++_seed, PromptMaxNewTokens: _limits);

    private GenerationOptions Groups() => new(GroupNewTokens, new SamplingOptions(1f), [], GroupSamples, Seed: ++_seed);

    [Benchmark(Baseline = true), BenchmarkCategory("LongTail")]
    public void LongTailBefore() => _before.Generate(_longTailPrompts, LongTail());

    [Benchmark, BenchmarkCategory("LongTail")]
    public void LongTailEngine() => _engine.Generate(_longTailPrompts, LongTail());

    [Benchmark(Baseline = true), BenchmarkCategory("Groups")]
    public void GroupsBefore() => _before.Generate(_groupPrompts, Groups());

    [Benchmark, BenchmarkCategory("Groups")]
    public void GroupsEngine() => _engine.Generate(_groupPrompts, Groups());

    public long Tokens(string method) => method.StartsWith("LongTail", StringComparison.Ordinal)
        ? Enumerable.Range(0, LongTailRequests).Sum(i => (long)Limit(i)) // the column's instance has not run Setup
        : (long)GroupPrompts * GroupSamples * GroupNewTokens;

    [GlobalCleanup]
    public void Dispose()
    {
        // The engine's last call, for the record beside the table: rates and occupancy.
        if (_engine is not null) Console.WriteLine($"// rollout engine, last call: {_engine.LastStats}");
        _engine?.Dispose();
        _before?.Dispose();
        _model?.Dispose();
        _backend?.Dispose();
        GC.SuppressFinalize(this);
    }
}

using BenchmarkDotNet.Attributes;
using OR1.Native;

namespace OR1.Bench.Kernels;

/// <summary>
/// The GRPO family (kernels/grpo.cu, Cpu/Grpo.cs, Ilgpu/Grpo.cs) on rollout batches of the published
/// OR1-7B stages: group advantages over the responses, their broadcast to every response token, and the
/// MAGIC clipped token-level loss with the entropy bonus, forward and backward, over all tokens. Token
/// counts are capped by the backend's traffic budget; response lengths vary (seeded) around the mean.
/// <code>dotnet run -c Release --project bench/OR1.Bench -- --filter '*Grpo*'</code>
/// </summary>
public class GrpoBenchmarks : KernelBenchmark
{
    // Per token the loss reads log-prob, old log-prob, advantage, entropy and weight.
    private const int LossBytesPerToken = 5 * sizeof(float);
    private static readonly PolicyLossOptions s_options = new(0.2f, 0.2f, 0.005f);

    private Tensor _rewards = null!, _advantages = null!, _tokenAdvantages = null!;
    private Tensor _logProbs = null!, _oldLogProbs = null!, _entropy = null!, _weights = null!, _terms = null!, _dLogProbs = null!, _dEntropy = null!;
    private Segments _groups = null!, _responses = null!;

    public override IEnumerable<KernelCase> Cases() => KernelCase.ForRollouts();

    private RolloutShape Rollout => Case.RolloutShape;

    /// <summary>Response lengths: seeded, uniform in [mean/2, 3 mean/2), scaled so the total fits the traffic budget.</summary>
    private int[] ResponseLengths
    {
        get
        {
            var random = new Random(7);
            long budgetTokens = Scale.TrafficBytes / LossBytesPerToken;
            double shrink = Math.Min(1.0, budgetTokens / ((double)Rollout.Responses * Rollout.MeanResponseTokens));
            int mean = Math.Max(1, (int)(Rollout.MeanResponseTokens * shrink));
            return Enumerable.Range(0, Rollout.Responses).Select(_ => mean / 2 + random.Next(Math.Max(1, mean))).Select(l => Math.Max(1, l)).ToArray();
        }
    }

    private int Tokens => ResponseLengths.Sum();

    protected override void Allocate(Random random)
    {
        var lengths = ResponseLengths;
        int responses = Rollout.Responses, tokens = lengths.Sum();
        _groups = SegmentsOf(Enumerable.Repeat(Rollout.GroupSize, Rollout.Prompts).ToArray());
        _responses = SegmentsOf(lengths);
        var rewards = new float[responses];
        for (int i = 0; i < responses; i++) rewards[i] = random.Next(2);
        _rewards = Zeros(new TensorShape(responses));
        Backend.Upload<float>(rewards, _rewards);
        _advantages = Zeros(new TensorShape(responses));
        _tokenAdvantages = Floats(random, tokens);
        _logProbs = Floats(random, tokens, 0.1f);
        _oldLogProbs = Floats(random, tokens, 0.1f);
        _entropy = Floats(random, tokens);
        _weights = Zeros(new TensorShape(tokens));
        Backend.Fill(_weights, 1f / tokens);
        _terms = Zeros(new TensorShape(PolicyLossTerms.Count));
        _dLogProbs = Zeros(new TensorShape(tokens));
        _dEntropy = Zeros(new TensorShape(tokens));
    }

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Advantages() => Repeat<GrpoBenchmarks>(static b => b.Backend.GrpoAdvantages(b._rewards, b._groups, 1e-6f, b._advantages));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Broadcast() => Repeat<GrpoBenchmarks>(static b => b.Backend.BroadcastSegments(b._advantages, b._responses, b._tokenAdvantages));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void LossForward() => Repeat<GrpoBenchmarks>(static b =>
        b.Backend.PolicyLossForward(b._logProbs, b._oldLogProbs, b._tokenAdvantages, b._entropy, b._weights, null, s_options, b._terms));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void LossBackward() => Repeat<GrpoBenchmarks>(static b =>
        b.Backend.PolicyLossBackward(b._logProbs, b._oldLogProbs, b._tokenAdvantages, b._weights, null, s_options, b._dLogProbs, b._dEntropy));

    public override long BytesMoved(string method)
    {
        long responses = Rollout.Responses, tokens = Tokens;
        return method switch
        {
            nameof(Advantages) => 2 * responses * sizeof(float),
            nameof(Broadcast) => (responses + tokens) * sizeof(float),
            nameof(LossForward) => tokens * LossBytesPerToken,
            nameof(LossBackward) => tokens * 6 * sizeof(float), // reads 4 per token, writes 2
            _ => 0,
        };
    }

    public override double Flops(string method) => 0;
}

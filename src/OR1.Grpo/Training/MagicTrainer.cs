using System.Diagnostics;
using OR1.Model;
using OR1.Native;

namespace OR1.Grpo.Training;

/// <summary>
/// The MAGIC update (docs/RECIPE.md "One training step", steps 4-8) on a Qwen2 policy: rejection of zero-signal
/// groups, group-relative advantages (computed and broadcast per token on the device), the clipped token-level
/// loss with the adaptive entropy bonus (and an optional k3 KL to the initial policy), backward through the model
/// in micro-batches of bounded tokens, global-norm clipping, AdamW, then the entropy-controller update.
/// </summary>
/// <remarks>
/// log p_old (<see cref="MagicOptions.OldLogProbs"/>): with <see cref="OldLogProbSource.Recompute"/> (the recipe's)
/// and one mini-batch it is the very forward pass that trains, copied on the device, so rho = 1 to the bit; with
/// several mini-batches one forward over the whole batch computes it before the first update, because later
/// mini-batches run after earlier updates. With <see cref="OldLogProbSource.Sampler"/> the rollout engine's values are
/// used. Either way the rollout engine's values, when given, are compared with the trainer's pre-update log-probs
/// (<see cref="StepMetrics.SamplerLogProbDiffMean"/>).
/// </remarks>
public sealed class MagicTrainer : IDisposable
{
    private readonly Qwen2Model _policy;
    private readonly Qwen2Model? _reference;
    private readonly IBackend _backend;
    private readonly MicroBatchBuffers _buffers;
    private readonly Tensor _lossTerms;
    private readonly float[] _hostTerms = new float[PolicyLossTerms.Count];
    private float[] _hostScratch = [];
    private float[] _hostLogProbs = [];
    private float[] _hostEntropy = [];
    private Qwen2Activations? _activations;
    private Qwen2Activations? _referenceActivations;

    /// <param name="policy">The model being trained.</param>
    /// <param name="options">Hyper-parameters.</param>
    /// <param name="reference">A frozen copy of the initial policy; required when the KL coefficient is non-zero.</param>
    public MagicTrainer(Qwen2Model policy, MagicOptions options, Qwen2Model? reference = null)
    {
        options.Validate();
        if (options.KlCoefficient > 0 && reference is null)
            throw new ArgumentException("MagicOptions.KlCoefficient is non-zero, which needs a reference model", nameof(reference));
        _policy = policy;
        _reference = reference;
        _backend = policy.Backend;
        Options = options;
        Optimizer = new AdamWOptimizer(policy);
        _buffers = new MicroBatchBuffers(_backend);
        _lossTerms = _backend.Allocate(DType.Float32, new TensorShape(PolicyLossTerms.Count), "policy loss terms");
        Controller = EntropyController.Initial(options.EntropyControl);
    }

    public MagicOptions Options { get; set; }

    /// <summary>Gradients, AdamW moments and the step count (checkpointed).</summary>
    public AdamWOptimizer Optimizer { get; }

    /// <summary>The adaptive entropy controller's state.</summary>
    public EntropyControlState Controller { get; set; }

    /// <summary>alpha_k used by the next step's loss.</summary>
    public double CurrentAlpha => Options.FixedEntropyCoefficient ?? Controller.Alpha;

    /// <summary>One MAGIC update from samples grouped by their <see cref="RolloutSample.GroupId"/>.</summary>
    public StepMetrics Step(IReadOnlyList<RolloutSample> samples) => Step(RolloutBatch.FromSamples(samples));

    /// <summary>
    /// One MAGIC update from a batch of rollouts. Returns the step's metrics; when every group has equal rewards the
    /// step is skipped (no optimizer step, no controller update) and Skipped is set.
    /// </summary>
    public StepMetrics Step(RolloutBatch rollouts)
    {
        ArgumentNullException.ThrowIfNull(rollouts);
        var timer = Stopwatch.StartNew();
        Validate(rollouts);
        var all = rollouts.Responses;
        var groupRewards = Enumerable.Range(0, all.GroupCount).Select(g => (IReadOnlyList<double>)rollouts.GroupRewards(g)).ToArray();
        var (none, solvedAll, partial) = GroupFilter.Histogram(groupRewards);
        int[] keptGroups = GroupFilter.KeptGroups(groupRewards);
        int sequences = all.SequenceCount;
        var lengths = Enumerable.Range(0, sequences).Select(all.ResponseLength).ToArray();
        var metrics = new StepMetrics
        {
            RewardMean = sequences == 0 ? 0 : rollouts.Rewards.Average(),
            SolveNone = none,
            SolveAll = solvedAll,
            Partial = partial,
            Groups = all.GroupCount,
            KeptGroups = keptGroups.Length,
            ResponseLengthMean = sequences == 0 ? 0 : lengths.Average(),
            ResponseLengthMax = sequences == 0 ? 0 : lengths.Max(),
            TruncationRatio = sequences == 0 ? 0 : rollouts.Truncated.Count(t => t) / (double)sequences,
            ResponseLengthClipRatio = sequences == 0 || Options.MaxResponseLength is not int max ? 0 : lengths.Count(l => l >= max) / (double)sequences,
            GeneratedTokens = all.ResponseTokenCount,
            EntropyCoefficient = CurrentAlpha,
            EntropyEnabled = Options.FixedEntropyCoefficient is not null || Controller.Enabled,
            LearningRate = Options.LearningRate,
            OldLogprobs = Options.OldLogProbs == OldLogProbSource.Sampler ? "sampler" : "recompute",
        };
        var batch = all.SelectGroups(keptGroups);
        if (keptGroups.Length == 0 || batch.ResponseTokenCount == 0)
            return metrics with { Skipped = true, UpdateSeconds = timer.Elapsed.TotalSeconds };

        // Kept sequence i is sequence keptSequence[i] of the rollouts (for rewards and the sampler's log-probs).
        var keptSequence = keptGroups.SelectMany(g => Enumerable.Range(all.GroupStart(g), all.GroupSize(g))).ToArray();
        using var advantages = Advantages(rollouts, keptSequence, batch);
        var miniBatches = MiniBatchRanges(batch, Options.MiniBatches);

        bool sampler = Options.OldLogProbs == OldLogProbSource.Sampler;
        float[]? precomputedOld = null;
        double oldSeconds = 0;
        if (!sampler && miniBatches.Count > 1)
        {
            var oldTimer = Stopwatch.StartNew();
            precomputedOld = ForwardLogProbs(batch);
            oldSeconds = oldTimer.Elapsed.TotalSeconds;
        }

        var step = new StepSums();
        var perMiniBatch = new List<MiniBatchMetrics>(miniBatches.Count);
        float alpha = (float)CurrentAlpha;
        var adam = new AdamWOptions(Options.LearningRate, Options.Beta1, Options.Beta2, Options.AdamEpsilon, Options.WeightDecay);
        for (int m = 0; m < miniBatches.Count; m++)
        {
            var mini = miniBatches[m];
            var sums = new StepSums();
            Optimizer.ZeroGradients();
            foreach (var range in batch.SplitByTokens(mini.FirstSequence, mini.EndSequence, Options.MicroBatchTokens))
            {
                var source = precomputedOld is not null ? OldSource.Precomputed : sampler ? OldSource.Sampler : OldSource.ThisForward;
                TrainMicroBatch(batch, range, mini, advantages, source, precomputedOld, rollouts, keptSequence, comparesSampler: m == 0 || precomputedOld is not null, alpha, sums);
            }
            float norm = Optimizer.Step(adam, Options.MaxGradNorm);
            perMiniBatch.Add(new MiniBatchMetrics(sums.PolicyGradient, sums.Kl, sums.ClipFraction, sums.ClipLow, sums.ClipHigh, sums.PpoKl, norm, sums.Tokens));
            step.Add(sums);
        }

        double entropyEstimate = step.Tokens == 0 ? 0 : step.SumNegOldLogProb / step.Tokens;
        if (Options.FixedEntropyCoefficient is null && step.Tokens > 0)
            Controller = EntropyController.Update(Controller, entropyEstimate, Options.EntropyControl);
        int steps = perMiniBatch.Count;
        return metrics with
        {
            Entropy = entropyEstimate,
            FullEntropy = step.Tokens == 0 ? 0 : step.SumEntropy / step.Tokens,
            PolicyLoss = step.PolicyGradient / steps,
            KlLoss = step.Kl / steps,
            ClipFraction = step.ClipFraction / steps,
            ClipFractionLow = step.ClipLow / steps,
            ClipFractionHigh = step.ClipHigh / steps,
            PpoKl = step.PpoKl / steps,
            GradNorm = perMiniBatch.Average(b => b.GradNorm),
            OptimizerSteps = steps,
            KeptTokens = step.Tokens,
            KeptSequenceTokens = batch.TokenCount,
            SamplerLogProbDiffMean = step.DiffTokens == 0 ? 0 : step.DiffSum / step.DiffTokens,
            SamplerLogProbDiffMax = step.DiffMax,
            SamplerLogProbDiffTokens = step.DiffTokens,
            OldLogProbSeconds = oldSeconds,
            UpdateSeconds = timer.Elapsed.TotalSeconds - oldSeconds,
            MiniBatches = perMiniBatch,
        };
    }

    private void Validate(RolloutBatch rollouts)
    {
        var batch = rollouts.Responses;
        int vocab = _policy.Config.VocabSize;
        for (int g = 0; g < batch.GroupCount; g++)
        {
            string name = rollouts.GroupNames[g];
            for (int s = batch.GroupStart(g); s < batch.GroupStart(g) + batch.GroupSize(g); s++)
            {
                foreach (int t in batch.Tokens.Slice(batch.SequenceStart(s), batch.SequenceLength(s)))
                    if ((uint)t >= (uint)vocab) throw new ArgumentException($"group '{name}': token id {t} is outside the vocabulary [0, {vocab})");
                var logProbs = rollouts.SamplerLogProbs[s];
                if (logProbs is not null && logProbs.Count != batch.ResponseLength(s))
                    throw new ArgumentException($"group '{name}': {logProbs.Count} old log-probs for {batch.ResponseLength(s)} response tokens");
                if (logProbs is null && Options.OldLogProbs == OldLogProbSource.Sampler)
                    throw new ArgumentException($"group '{name}': a response has no log-probs from the rollout engine, which old_logprobs = sampler needs (or use recompute)");
                if (!double.IsFinite(rollouts.Rewards[s])) throw new ArgumentException($"group '{name}': reward {rollouts.Rewards[s]} is not finite");
            }
        }
    }

    /// <summary>Group-relative advantages of the kept sequences, on the device, one per sequence.</summary>
    private Tensor Advantages(RolloutBatch rollouts, int[] keptSequence, ResponseBatch batch)
    {
        var rewards = keptSequence.Select(s => (float)rollouts.Rewards[s]).ToArray();
        using var rewardTensor = _backend.Allocate(DType.Float32, new TensorShape(rewards.Length));
        var advantages = _backend.Allocate(DType.Float32, new TensorShape(rewards.Length), "advantages");
        using var groups = Segments.FromOffsets(_backend, batch.GroupOffsets);
        _backend.Upload<float>(rewards, rewardTensor);
        _backend.GrpoAdvantages(rewardTensor, groups, (float)Options.AdvantageEpsilon, advantages);
        return advantages;
    }

    /// <summary>The kept groups split into <paramref name="count"/> contiguous mini-batches of whole groups.</summary>
    private static List<SequenceRange> MiniBatchRanges(ResponseBatch batch, int count)
    {
        count = Math.Min(count, batch.GroupCount);
        var ranges = new List<SequenceRange>(count);
        for (int m = 0; m < count; m++)
        {
            int g0 = (int)((long)batch.GroupCount * m / count), g1 = (int)((long)batch.GroupCount * (m + 1) / count);
            int end = g1 < batch.GroupCount ? batch.GroupStart(g1) : batch.SequenceCount;
            var range = batch.Range(batch.GroupStart(g0), end);
            if (range.ResponseTokens > 0) ranges.Add(range);
        }
        return ranges;
    }

    private enum OldSource { ThisForward, Precomputed, Sampler }

    /// <summary>Sums over a mini-batch's micro-batches (loss terms are weighted means, so they add up).</summary>
    private sealed class StepSums
    {
        public double PolicyGradient, Kl, ClipFraction, ClipLow, ClipHigh, PpoKl, SumNegOldLogProb, SumEntropy, DiffSum, DiffMax;
        public int Tokens, DiffTokens;

        public void Add(StepSums o)
        {
            PolicyGradient += o.PolicyGradient;
            Kl += o.Kl;
            ClipFraction += o.ClipFraction;
            ClipLow += o.ClipLow;
            ClipHigh += o.ClipHigh;
            PpoKl += o.PpoKl;
            SumNegOldLogProb += o.SumNegOldLogProb;
            SumEntropy += o.SumEntropy;
            DiffSum += o.DiffSum;
            DiffMax = Math.Max(DiffMax, o.DiffMax);
            Tokens += o.Tokens;
            DiffTokens += o.DiffTokens;
        }
    }

    private void TrainMicroBatch(ResponseBatch batch, SequenceRange range, SequenceRange mini, Tensor advantages, OldSource oldSource,
        float[]? precomputedOld, RolloutBatch rollouts, int[] keptSequence, bool comparesSampler, float alpha, StepSums sums)
    {
        using var micro = _buffers.Load(batch, range);
        int n = range.TokenCount;
        float weight = (float)LossWeights.TokenWeight(Options.Aggregation, range.ResponseTokens, range.SequenceCount, mini.ResponseTokens, mini.SequenceCount);
        float[] host = Scratch(ref _hostScratch, n);
        Array.Clear(host, 0, n);
        ForEachResponseToken(batch, range, (s, j, p) => host[p] = weight);
        _backend.Upload<float>(host.AsSpan(0, n), micro.Weights);
        _backend.BroadcastSegments(advantages.SliceRows(range.FirstSequence, range.SequenceCount), micro.Packed.Sequences, micro.Advantages);

        var act = Arena(ref _activations, _policy.Config, n);
        _policy.Forward(micro.Packed, act);
        _policy.LogProbs(act, micro.Targets, Options.Temperature, micro.LogProbs, micro.Entropy);
        switch (oldSource)
        {
            case OldSource.ThisForward:
                // On-policy: the behaviour policy is this very forward pass, detached, bit for bit.
                _backend.Copy(micro.LogProbs, micro.OldLogProbs);
                break;
            case OldSource.Precomputed:
                _backend.Upload<float>(precomputedOld.AsSpan(range.TokenStart, n), micro.OldLogProbs);
                break;
            case OldSource.Sampler:
                Array.Clear(host, 0, n);
                ForEachResponseToken(batch, range, (s, j, p) => host[p] = rollouts.SamplerLogProbs[keptSequence[s]]![j]);
                _backend.Upload<float>(host.AsSpan(0, n), micro.OldLogProbs);
                break;
        }

        Tensor? referenceLogProbs = null;
        if (Options.KlCoefficient > 0)
        {
            var referenceAct = Arena(ref _referenceActivations, _reference!.Config, n);
            _reference.Forward(micro.Packed, referenceAct);
            // The reference's entropies are not needed: DLogProbs serves as their scratch until the loss backward overwrites it.
            _reference.LogProbs(referenceAct, micro.Targets, Options.Temperature, micro.ReferenceLogProbs, micro.DLogProbs);
            referenceLogProbs = micro.ReferenceLogProbs;
        }

        var lossOptions = new PolicyLossOptions(Options.ClipLow, Options.ClipHigh, alpha, (float)Options.KlCoefficient);
        _backend.PolicyLossForward(micro.LogProbs, micro.OldLogProbs, micro.Advantages, micro.Entropy, micro.Weights, referenceLogProbs, lossOptions, _lossTerms);
        _backend.PolicyLossBackward(micro.LogProbs, micro.OldLogProbs, micro.Advantages, micro.Weights, referenceLogProbs, lossOptions, micro.DLogProbs, micro.DEntropy);
        _policy.Backward(micro.Packed, act, micro.Targets, Options.Temperature, micro.DLogProbs, alpha != 0 ? micro.DEntropy : null, micro.Entropy, Optimizer.Gradients);

        _backend.Download<float>(_lossTerms, _hostTerms);
        sums.PolicyGradient += _hostTerms[PolicyLossTerms.PolicyGradient];
        sums.Kl += _hostTerms[PolicyLossTerms.Kl];
        sums.ClipFraction += _hostTerms[PolicyLossTerms.ClipFraction];
        sums.ClipLow += _hostTerms[PolicyLossTerms.ClipFractionLow];
        sums.ClipHigh += _hostTerms[PolicyLossTerms.ClipFractionHigh];
        sums.PpoKl += _hostTerms[PolicyLossTerms.PpoKl];
        sums.Tokens += range.ResponseTokens;

        // Host statistics over the response tokens: e_k (mean -logp_old), the mean entropy, and how far the rollout
        // engine's log-probs are from the trainer's pre-update ones.
        float[] logProbs = Scratch(ref _hostLogProbs, n);
        float[] entropy = Scratch(ref _hostEntropy, n);
        _backend.Download<float>(micro.LogProbs, logProbs.AsSpan(0, n));
        _backend.Download<float>(micro.Entropy, entropy.AsSpan(0, n));
        ForEachResponseToken(batch, range, (s, j, p) =>
        {
            float old = oldSource switch
            {
                OldSource.ThisForward => logProbs[p],
                OldSource.Precomputed => precomputedOld![range.TokenStart + p],
                _ => rollouts.SamplerLogProbs[keptSequence[s]]![j],
            };
            sums.SumNegOldLogProb -= old;
            sums.SumEntropy += entropy[p];
            var samplerValues = rollouts.SamplerLogProbs[keptSequence[s]];
            if (samplerValues is null || !comparesSampler) return;
            // The trainer's pre-update log-prob: the precomputed one, or this forward's (first mini-batch: nothing updated yet).
            float trainer = oldSource == OldSource.Precomputed ? precomputedOld![range.TokenStart + p] : logProbs[p];
            double diff = Math.Abs((double)samplerValues[j] - trainer);
            sums.DiffSum += diff;
            sums.DiffMax = Math.Max(sums.DiffMax, diff);
            sums.DiffTokens++;
        });
    }

    /// <summary>Calls <paramref name="visit"/>(sequence, response index j, position in the range) for every response token of <paramref name="range"/>.</summary>
    private static void ForEachResponseToken(ResponseBatch batch, SequenceRange range, ResponseTokenVisitor visit)
    {
        for (int s = range.FirstSequence; s < range.EndSequence; s++)
        {
            int start = batch.ResponseStart(s) - range.TokenStart;
            for (int j = 0; j < batch.ResponseLength(s); j++) visit(s, j, start + j);
        }
    }

    private delegate void ResponseTokenVisitor(int sequence, int responseIndex, int position);

    /// <summary>Log-probs of every packed position under the current policy (no gradient), before any update.</summary>
    private float[] ForwardLogProbs(ResponseBatch batch)
    {
        var result = new float[batch.TokenCount];
        foreach (var range in batch.SplitByTokens(0, batch.SequenceCount, Options.MicroBatchTokens))
        {
            using var micro = _buffers.Load(batch, range);
            var act = Arena(ref _activations, _policy.Config, range.TokenCount);
            _policy.Forward(micro.Packed, act);
            _policy.LogProbs(act, micro.Targets, Options.Temperature, micro.LogProbs, micro.Entropy);
            _backend.Download<float>(micro.LogProbs, result.AsSpan(range.TokenStart, range.TokenCount));
        }
        return result;
    }

    /// <summary>A host array of at least <paramref name="n"/> floats, reused from step to step.</summary>
    private static float[] Scratch(ref float[] buffer, int n)
    {
        if (buffer.Length < n) buffer = new float[Math.Max(n, buffer.Length + buffer.Length / 2)];
        return buffer;
    }

    private Qwen2Activations Arena(ref Qwen2Activations? arena, Qwen2Config config, int tokens)
    {
        if (arena is null || arena.Capacity < tokens)
        {
            arena?.Dispose();
            arena = new Qwen2Activations(_backend, config, Math.Max(tokens, Math.Min(Options.MicroBatchTokens, 1 << 16)), _policy.Storage);
        }
        return arena;
    }

    public void Dispose()
    {
        _activations?.Dispose();
        _referenceActivations?.Dispose();
        _buffers.Dispose();
        _lossTerms.Dispose();
        Optimizer.Dispose();
    }
}

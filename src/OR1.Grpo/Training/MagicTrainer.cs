using System.Diagnostics;
using OR1.Model;
using OR1.Native;

namespace OR1.Grpo.Training;

/// <summary>
/// The MAGIC update (docs/RECIPE.md "One training step", steps 4-8) on a Qwen2 policy: rejection of
/// zero-signal groups, group-relative advantages, the clipped token-level loss with the adaptive entropy
/// bonus (and an optional k3 KL to the initial policy), backward through the model in micro-batches of
/// bounded tokens, global-norm clipping, AdamW, then the entropy-controller update.
/// The trainer owns the gradient and optimizer-moment buffers and the controller state; all of it is
/// exposed for checkpoints.
/// </summary>
public sealed class MagicTrainer : IDisposable
{
    private readonly Qwen2Model _policy;
    private readonly Qwen2Model? _reference;
    private readonly IBackend _backend;
    private readonly AdamWSlot[] _slots;
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
        Gradients = new Qwen2Weights(_backend, policy.Config);
        FirstMoment = new Qwen2Weights(_backend, policy.Config);
        SecondMoment = new Qwen2Weights(_backend, policy.Config);
        _slots = policy.Weights.Named.Select((p, i) => new AdamWSlot(p.Tensor, Gradients.Named[i].Tensor, FirstMoment.Named[i].Tensor, SecondMoment.Named[i].Tensor)).ToArray();
        Controller = EntropyController.Initial(options.EntropyControl);
    }

    public MagicOptions Options { get; set; }
    public Qwen2Weights Gradients { get; }
    public Qwen2Weights FirstMoment { get; }
    public Qwen2Weights SecondMoment { get; }

    /// <summary>Optimizer steps taken so far (AdamW's bias-correction count).</summary>
    public int OptimizerSteps { get; set; }

    /// <summary>The adaptive entropy controller's state.</summary>
    public EntropyControlState Controller { get; set; }

    /// <summary>
    /// One MAGIC update from a batch of rollouts. Returns the step's metrics; when every group has equal
    /// rewards the step is skipped (no optimizer step, no controller update) and Skipped is set.
    /// </summary>
    public StepMetrics Step(IReadOnlyList<RolloutSample> samples)
    {
        ArgumentNullException.ThrowIfNull(samples);
        var timer = Stopwatch.StartNew();
        var groups = samples.Select((s, i) => (s, i)).GroupBy(x => x.s.GroupId, StringComparer.Ordinal)
            .Select(g => g.Select(x => x.s).ToArray()).ToArray();
        foreach (var s in samples) Validate(s);
        var groupRewards = groups.Select(g => (IReadOnlyList<double>)g.Select(s => s.Reward).ToArray()).ToArray();
        var (none, all, partial) = GroupFilter.Histogram(groupRewards);
        var kept = GroupFilter.KeptGroups(groupRewards).Select(g => groups[g]).ToArray();
        var metrics = new StepMetrics
        {
            RewardMean = samples.Count == 0 ? 0 : samples.Average(s => s.Reward),
            SolveNone = none,
            SolveAll = all,
            Partial = partial,
            Groups = groups.Length,
            KeptGroups = kept.Length,
            ResponseLengthMean = samples.Count == 0 ? 0 : samples.Average(s => s.ResponseTokens.Count),
            ResponseLengthMax = samples.Count == 0 ? 0 : samples.Max(s => s.ResponseTokens.Count),
            TruncationRatio = samples.Count == 0 ? 0 : samples.Count(s => s.Truncated) / (double)samples.Count,
            GeneratedTokens = samples.Sum(s => s.ResponseTokens.Count),
            EntropyCoefficient = CurrentAlpha,
            EntropyEnabled = Options.FixedEntropyCoefficient is not null || Controller.Enabled,
            LearningRate = Options.LearningRate,
        };
        if (kept.Length == 0 || kept.Sum(g => g.Sum(s => s.ResponseTokens.Count)) == 0)
            return metrics with { Skipped = true, UpdateSeconds = timer.Elapsed.TotalSeconds };

        var advantages = Advantages(kept);
        var keptSamples = kept.SelectMany(g => g).ToArray();
        // Old log-probs: given by the rollout engine, else the current policy's before any update. With one
        // mini-batch they come from the very forward pass that trains (rho = 1 exactly); with several, all
        // are computed first, because later mini-batches run after earlier updates.
        bool needOld = keptSamples.Any(s => s.OldLogProbs is null);
        float[][]? oldLogProbs = needOld && Options.MiniBatches > 1 ? CurrentLogProbs(keptSamples) : null;

        var miniBatches = Split(Enumerable.Range(0, keptSamples.Length).ToArray(), kept, Options.MiniBatches);
        double pgLoss = 0, klLoss = 0, clipFraction = 0, gradNorm = 0, sumOldNegLogp = 0, sumEntropy = 0;
        int keptTokens = 0, optimizerSteps = 0;
        float alpha = (float)CurrentAlpha;
        foreach (var miniBatch in miniBatches)
        {
            int miniTokens = miniBatch.Sum(i => keptSamples[i].ResponseTokens.Count);
            if (miniTokens == 0) continue;
            Gradients.Zero();
            foreach (var micro in MicroBatches(miniBatch, keptSamples))
            {
                var result = TrainMicroBatch(micro, keptSamples, advantages, oldLogProbs, miniTokens, miniBatch.Length, alpha);
                pgLoss += result.PolicyGradient;
                klLoss += result.Kl;
                clipFraction += result.ClipFraction;
                sumOldNegLogp += result.SumOldNegLogProb;
                sumEntropy += result.SumEntropy;
                keptTokens += result.Tokens;
            }
            float norm = _backend.GlobalNorm(_slots.Select(s => s.Gradient).ToArray());
            gradNorm += norm;
            float scale = (float)Math.Min(1.0, Options.MaxGradNorm / (norm + 1e-6));
            LastClipScale = scale;
            if (!float.IsFinite(norm)) throw new InvalidOperationException($"the gradient norm is {norm}; the update was not applied (check the learning rate and the data)");
            _backend.AdamWStep(_slots, new AdamWOptions(Options.LearningRate, Options.Beta1, Options.Beta2, Options.AdamEpsilon, Options.WeightDecay), ++OptimizerSteps, scale);
            optimizerSteps++;
        }
        double entropyEstimate = keptTokens == 0 ? 0 : sumOldNegLogp / keptTokens;
        if (Options.FixedEntropyCoefficient is null && keptTokens > 0)
            Controller = EntropyController.Update(Controller, entropyEstimate, Options.EntropyControl);
        return metrics with
        {
            Entropy = entropyEstimate,
            FullEntropy = keptTokens == 0 ? 0 : sumEntropy / keptTokens,
            PolicyLoss = pgLoss / Math.Max(1, optimizerSteps),
            KlLoss = klLoss / Math.Max(1, optimizerSteps),
            ClipFraction = clipFraction / Math.Max(1, optimizerSteps),
            GradNorm = gradNorm / Math.Max(1, optimizerSteps),
            OptimizerSteps = optimizerSteps,
            KeptTokens = keptTokens,
            UpdateSeconds = timer.Elapsed.TotalSeconds,
        };
    }

    /// <summary>
    /// The factor the last optimizer step multiplied the gradient by (min(1, max_norm / norm)); the
    /// gradient buffers themselves keep the unclipped values.
    /// </summary>
    public float LastClipScale { get; private set; } = 1f;

    /// <summary>alpha_k used by the next step's loss.</summary>
    public double CurrentAlpha => Options.FixedEntropyCoefficient ?? Controller.Alpha;

    private void Validate(RolloutSample s)
    {
        int vocab = _policy.Config.VocabSize;
        if (s.PromptTokens.Count == 0) throw new ArgumentException($"group '{s.GroupId}': a sample has an empty prompt");
        foreach (int t in s.PromptTokens.Concat(s.ResponseTokens))
            if ((uint)t >= (uint)vocab) throw new ArgumentException($"group '{s.GroupId}': token id {t} is outside the vocabulary [0, {vocab})");
        if (s.OldLogProbs is not null && s.OldLogProbs.Count != s.ResponseTokens.Count)
            throw new ArgumentException($"group '{s.GroupId}': {s.OldLogProbs.Count} old log-probs for {s.ResponseTokens.Count} response tokens");
        if (!double.IsFinite(s.Reward)) throw new ArgumentException($"group '{s.GroupId}': reward {s.Reward} is not finite");
    }

    /// <summary>Group-relative advantages of the kept samples (through the backend's GRPO op), in kept order.</summary>
    private float[] Advantages(RolloutSample[][] kept)
    {
        var rewards = kept.SelectMany(g => g.Select(s => (float)s.Reward)).ToArray();
        using var rewardTensor = _backend.Allocate(DType.Float32, new TensorShape(rewards.Length));
        using var advantageTensor = _backend.Allocate(DType.Float32, new TensorShape(rewards.Length));
        using var groupSegments = Segments.FromLengths(_backend, kept.Select(g => g.Length).ToArray());
        _backend.Upload<float>(rewards, rewardTensor);
        _backend.GrpoAdvantages(rewardTensor, groupSegments, (float)Options.AdvantageEpsilon, advantageTensor);
        var result = new float[rewards.Length];
        _backend.Download<float>(advantageTensor, result);
        return result;
    }

    /// <summary>Splits the kept groups into <paramref name="count"/> contiguous mini-batches of whole groups.</summary>
    private static int[][] Split(int[] sampleIndices, RolloutSample[][] kept, int count)
    {
        count = Math.Min(count, kept.Length);
        var result = new int[count][];
        int at = 0;
        for (int m = 0; m < count; m++)
        {
            int g0 = (int)((long)kept.Length * m / count), g1 = (int)((long)kept.Length * (m + 1) / count);
            int n = kept.Skip(g0).Take(g1 - g0).Sum(g => g.Length);
            result[m] = sampleIndices.AsSpan(at, n).ToArray();
            at += n;
        }
        return result;
    }

    /// <summary>Consecutive samples packed up to the token budget; a longer sample goes alone.</summary>
    private IEnumerable<int[]> MicroBatches(int[] indices, RolloutSample[] samples)
    {
        var current = new List<int>();
        int tokens = 0;
        foreach (int i in indices)
        {
            int length = samples[i].PromptTokens.Count + samples[i].ResponseTokens.Count;
            if (current.Count > 0 && tokens + length > Options.MicroBatchTokens)
            {
                yield return current.ToArray();
                current.Clear();
                tokens = 0;
            }
            current.Add(i);
            tokens += length;
        }
        if (current.Count > 0) yield return current.ToArray();
    }

    private readonly record struct MicroResult(double PolicyGradient, double Kl, double ClipFraction, double SumOldNegLogProb, double SumEntropy, int Tokens);

    /// <summary>Layout of a micro-batch: packed sequences, next-token targets, and where the response tokens sit.</summary>
    private sealed class MicroBatchLayout
    {
        public required IReadOnlyList<int>[] Sequences { get; init; }
        public required int[] Targets { get; init; }
        /// <summary>Packed position predicting response token j of sample s: ResponseStart[s] + j.</summary>
        public required int[] ResponseStart { get; init; }
        public int Total => Targets.Length;

        public static MicroBatchLayout Create(int[] micro, RolloutSample[] samples)
        {
            var sequences = micro.Select(i => (IReadOnlyList<int>)samples[i].PromptTokens.Concat(samples[i].ResponseTokens).ToArray()).ToArray();
            int total = sequences.Sum(s => s.Count);
            var targets = new int[total];
            var starts = new int[micro.Length];
            for (int s = 0, at = 0; s < sequences.Length; s++)
            {
                starts[s] = at + samples[micro[s]].PromptTokens.Count - 1;
                for (int p = 0; p < sequences[s].Count; p++, at++) targets[at] = p + 1 < sequences[s].Count ? sequences[s][p + 1] : 0;
            }
            return new MicroBatchLayout { Sequences = sequences, Targets = targets, ResponseStart = starts };
        }
    }

    private MicroResult TrainMicroBatch(int[] micro, RolloutSample[] samples, float[] advantages, float[][]? precomputedOld,
        int miniTokens, int miniSequences, float alpha)
    {
        var layout = MicroBatchLayout.Create(micro, samples);
        int total = layout.Total;
        int microTokens = micro.Sum(i => samples[i].ResponseTokens.Count);
        float weight = (float)LossWeights.TokenWeight(Options.Aggregation, microTokens, micro.Length, miniTokens, miniSequences);
        var hostWeights = new float[total];
        var hostAdvantages = new float[total];
        var hostOld = new float[total];
        bool oldFromForward = false;
        for (int s = 0; s < micro.Length; s++)
        {
            var sample = samples[micro[s]];
            var old = sample.OldLogProbs ?? precomputedOld?[micro[s]];
            if (old is null) oldFromForward = true;
            for (int j = 0; j < sample.ResponseTokens.Count; j++)
            {
                int p = layout.ResponseStart[s] + j;
                hostWeights[p] = weight;
                hostAdvantages[p] = advantages[micro[s]];
                if (old is not null) hostOld[p] = old[j];
            }
        }

        using var batch = PackedBatch.Create(_backend, layout.Sequences);
        var act = Arena(ref _activations, _policy.Config, total);
        using var targets = Upload(layout.Targets);
        using var weights = Upload(hostWeights);
        using var advantageTensor = Upload(hostAdvantages);
        using var logProbs = _backend.Allocate(DType.Float32, new TensorShape(total));
        using var entropy = _backend.Allocate(DType.Float32, new TensorShape(total));
        _policy.Forward(batch, act);
        _policy.LogProbs(act, targets, Options.Temperature, logProbs, entropy);
        using var oldLogProbs = Upload(hostOld);
        var currentLogProbs = new float[total];
        _backend.Download<float>(logProbs, currentLogProbs);
        if (oldFromForward)
        {
            // On-policy: the behaviour policy is this very forward pass, detached.
            for (int s = 0; s < micro.Length; s++)
            {
                var sample = samples[micro[s]];
                if (sample.OldLogProbs is not null || precomputedOld is not null) continue;
                for (int j = 0; j < sample.ResponseTokens.Count; j++) hostOld[layout.ResponseStart[s] + j] = currentLogProbs[layout.ResponseStart[s] + j];
            }
            _backend.Upload<float>(hostOld, oldLogProbs);
        }

        Tensor? referenceLogProbs = null;
        if (Options.KlCoefficient > 0)
        {
            var referenceAct = Arena(ref _referenceActivations, _reference!.Config, total);
            referenceLogProbs = _backend.Allocate(DType.Float32, new TensorShape(total));
            using var referenceEntropy = _backend.Allocate(DType.Float32, new TensorShape(total));
            _reference.Forward(batch, referenceAct);
            _reference.LogProbs(referenceAct, targets, Options.Temperature, referenceLogProbs, referenceEntropy);
        }
        try
        {
            var lossOptions = new PolicyLossOptions(Options.ClipLow, Options.ClipHigh, alpha, (float)Options.KlCoefficient);
            using var terms = _backend.Allocate(DType.Float32, new TensorShape(PolicyLossTerms.Count));
            using var dLogProbs = _backend.Allocate(DType.Float32, new TensorShape(total));
            using var dEntropy = _backend.Allocate(DType.Float32, new TensorShape(total));
            _backend.PolicyLossForward(logProbs, oldLogProbs, advantageTensor, entropy, weights, referenceLogProbs, lossOptions, terms);
            _backend.PolicyLossBackward(logProbs, oldLogProbs, advantageTensor, weights, referenceLogProbs, lossOptions, dLogProbs, dEntropy);
            _policy.Backward(batch, act, targets, Options.Temperature, dLogProbs, alpha != 0 ? dEntropy : null, entropy, Gradients);

            var hostTerms = new float[PolicyLossTerms.Count];
            _backend.Download<float>(terms, hostTerms);
            var hostEntropy = new float[total];
            _backend.Download<float>(entropy, hostEntropy);
            double sumOld = 0, sumEntropy = 0;
            for (int p = 0; p < total; p++)
            {
                if (hostWeights[p] == 0) continue;
                sumOld -= hostOld[p];
                sumEntropy += hostEntropy[p];
            }
            return new MicroResult(hostTerms[PolicyLossTerms.PolicyGradient], hostTerms[PolicyLossTerms.Kl], hostTerms[PolicyLossTerms.ClipFraction], sumOld, sumEntropy, microTokens);
        }
        finally
        {
            referenceLogProbs?.Dispose();
        }
    }

    /// <summary>Log-probs of every kept sample's response under the current policy (no gradient).</summary>
    private float[][] CurrentLogProbs(RolloutSample[] samples)
    {
        var result = new float[samples.Length][];
        foreach (var micro in MicroBatches(Enumerable.Range(0, samples.Length).ToArray(), samples))
        {
            var layout = MicroBatchLayout.Create(micro, samples);
            using var batch = PackedBatch.Create(_backend, layout.Sequences);
            var act = Arena(ref _activations, _policy.Config, layout.Total);
            using var targets = Upload(layout.Targets);
            using var logProbs = _backend.Allocate(DType.Float32, new TensorShape(layout.Total));
            using var entropy = _backend.Allocate(DType.Float32, new TensorShape(layout.Total));
            _policy.Forward(batch, act);
            _policy.LogProbs(act, targets, Options.Temperature, logProbs, entropy);
            var host = new float[layout.Total];
            _backend.Download<float>(logProbs, host);
            for (int s = 0; s < micro.Length; s++)
                result[micro[s]] = host.AsSpan(layout.ResponseStart[s], samples[micro[s]].ResponseTokens.Count).ToArray();
        }
        return result;
    }

    private Qwen2Activations Arena(ref Qwen2Activations? arena, Qwen2Config config, int tokens)
    {
        if (arena is null || arena.Capacity < tokens)
        {
            arena?.Dispose();
            arena = new Qwen2Activations(_backend, config, Math.Max(tokens, Math.Min(Options.MicroBatchTokens, 1 << 16)));
        }
        return arena;
    }

    private Tensor Upload(int[] data)
    {
        var t = _backend.Allocate(DType.Int32, new TensorShape(data.Length));
        _backend.Upload<int>(data, t);
        return t;
    }

    private Tensor Upload(float[] data)
    {
        var t = _backend.Allocate(DType.Float32, new TensorShape(data.Length));
        _backend.Upload<float>(data, t);
        return t;
    }

    public void Dispose()
    {
        _activations?.Dispose();
        _referenceActivations?.Dispose();
        Gradients.Dispose();
        FirstMoment.Dispose();
        SecondMoment.Dispose();
    }
}

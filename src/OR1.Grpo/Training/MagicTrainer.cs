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
/// <para>
/// Round trips: the micro-batches of a mini-batch run without the host waiting on any of them. What the metrics need
/// (loss terms, log-probs, entropies) collects on the device in a <see cref="MiniBatchReadback"/> and comes back in one
/// copy per mini-batch, beside the optimizer's gradient-norm read: two synchronisations per optimizer step (three
/// with precomputed old log-probs), none per micro-batch, and no device allocation once the buffers have grown.
/// </para>
/// </remarks>
public sealed class MagicTrainer : IDisposable
{
    private readonly Qwen2Model _policy;
    private readonly Qwen2Model? _reference;
    private readonly IBackend _backend;
    private readonly MicroBatchBuffers _buffers;
    private readonly MiniBatchReadback _readback;
    private readonly OR1.Native.Distributed.NcclCollectives? _nccl;
    private float[] _hostScratch = [];
    private float[] _hostRewards = [];
    private float[] _hostOldLogProbs = [];
    // Reused step to step (grow-only): a step allocates on the device only while its batch is the largest yet.
    private Tensor? _rewards, _advantages, _groupOffsets, _oldLogProbs;
    private Qwen2Activations? _activations;
    private Qwen2Activations? _referenceActivations;

    /// <param name="policy">The model being trained.</param>
    /// <param name="options">Hyper-parameters.</param>
    /// <param name="reference">A frozen copy of the initial policy; required when the KL coefficient is non-zero.</param>
    /// <param name="world">The data-parallel ranks (<see cref="World"/>); one process when null.</param>
    public MagicTrainer(Qwen2Model policy, MagicOptions options, Qwen2Model? reference = null, OR1.Native.Distributed.ICollectives? world = null)
    {
        options.Validate();
        if (options.KlCoefficient > 0 && reference is null)
            throw new ArgumentException("MagicOptions.KlCoefficient is non-zero, which needs a reference model", nameof(reference));
        _policy = policy;
        _reference = reference;
        _backend = policy.Backend;
        Options = options;
        World = world ?? OR1.Native.Distributed.SingleProcess.Instance;
        _nccl = DeviceCommunicator(_backend, World, out string? staged);
        Optimizer = new AdamWOptimizer(policy, World, options.ShardOptimizer, _nccl, overlapReduction: options.OverlapGradientReduction,
            bucketElements: options.GradientBucketElements);
        CollectivesPath = staged ?? Optimizer.CollectivesPath;
        _buffers = new MicroBatchBuffers(_backend, policy.Config.VocabSize);
        _readback = new MiniBatchReadback(_backend);
        Controller = EntropyController.Initial(options.EntropyControl);
    }

    public MagicOptions Options { get; set; }

    /// <summary>Gradients, AdamW moments and the step count (checkpointed).</summary>
    public AdamWOptimizer Optimizer { get; }

    /// <summary>The adaptive entropy controller's state.</summary>
    public EntropyControlState Controller { get; set; }

    /// <summary>
    /// The data-parallel world (<see cref="OR1.Native.Distributed.Collectives.FromLauncher"/>; one process by default).
    /// With N ranks every rank is given the whole rollout batch and computes the same filter, advantages and
    /// mini-batches; within each mini-batch the kept groups are dealt to the ranks by tokens (the longest first, each to
    /// the least loaded rank), each rank runs the forward and backward of its own groups only, the loss sums are
    /// all-reduced and the gradients summed before the clip (all-reduced, or reduce-scattered with the sharded optimizer:
    /// <see cref="AdamWOptimizer"/>), and every rank applies the same update: the step of one process over the whole
    /// batch, up to the order of the gradient sums.
    /// </summary>
    public OR1.Native.Distributed.ICollectives World { get; }

    /// <summary>How the gradients travel between ranks: "host (in place)", "nccl 2.x", or "staged through the host (why)".</summary>
    public string CollectivesPath { get; }

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
        // With several ranks each mini-batch's groups are reordered so that every rank's share is one contiguous range.
        var chunks = MiniBatchGroups(keptGroups.Length, Options.MiniBatches);
        int[][]? rankCounts = null;
        if (World.WorldSize > 1) (keptGroups, rankCounts) = DealByTokens(keptGroups, chunks, World.WorldSize, all);
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
            WorldSize = World.WorldSize,
            OptimizerStateBytes = Optimizer.MomentBytes + Optimizer.MasterBytes,
            EntropyEnabled = Options.FixedEntropyCoefficient is not null || Controller.Enabled,
            LearningRate = Options.LearningRate,
            OldLogprobs = Options.OldLogProbs == OldLogProbSource.Sampler ? "sampler" : "recompute",
        };
        var batch = all.SelectGroups(keptGroups);
        if (keptGroups.Length == 0 || batch.ResponseTokenCount == 0)
            return metrics with { Skipped = true, UpdateSeconds = timer.Elapsed.TotalSeconds };

        // Kept sequence i is sequence keptSequence[i] of the rollouts (for rewards and the sampler's log-probs).
        var keptSequence = keptGroups.SelectMany(g => Enumerable.Range(all.GroupStart(g), all.GroupSize(g))).ToArray();
        var advantages = Advantages(rollouts, keptSequence, batch);
        var (miniBatches, localRanges) = MiniBatchRanges(batch, chunks, rankCounts, World.Rank);

        bool sampler = Options.OldLogProbs == OldLogProbSource.Sampler;
        float[]? precomputedOld = null;
        double oldSeconds = 0;
        if (!sampler && miniBatches.Count > 1)
        {
            var oldTimer = Stopwatch.StartNew();
            precomputedOld = ForwardLogProbs(batch, localRanges);
            oldSeconds = oldTimer.Elapsed.TotalSeconds;
        }

        var step = new StepSums();
        int largestMicroBatch = 0;
        var perMiniBatch = new List<MiniBatchMetrics>(miniBatches.Count);
        float alpha = (float)CurrentAlpha;
        var adam = new AdamWOptions(Options.LearningRate, Options.Beta1, Options.Beta2, Options.AdamEpsilon, Options.WeightDecay);
        for (int m = 0; m < miniBatches.Count; m++)
        {
            var mini = miniBatches[m];
            var sums = new StepSums();
            // This rank's share of the mini-batch (all of it in one process); the loss weights stay the mini-batch's.
            var local = localRanges[m];
            var microBatches = local.SequenceCount == 0 ? [] : batch.SplitByTokens(local.FirstSequence, local.EndSequence, Options.MicroBatchTokens);
            foreach (var range in microBatches) largestMicroBatch = Math.Max(largestMicroBatch, range.TokenCount);
            var source = precomputedOld is not null ? OldSource.Precomputed : sampler ? OldSource.Sampler : OldSource.ThisForward;
            _readback.Begin(microBatches);
            Optimizer.ZeroGradients();
            for (int k = 0; k < microBatches.Count; k++)
                TrainMicroBatch(batch, microBatches[k], k, mini, advantages, source, rollouts, keptSequence, alpha,
                    // The last micro-batch's backward starts the gradients' sum as its layers finish.
                    k == microBatches.Count - 1 ? Optimizer.GradientsFinalFrom : null);
            // The mini-batch's first wait for the device: everything its micro-batches left for the host, in one copy.
            _readback.Download();
            // Finishes the sum of the ranks' gradients (all-reduced, or each bucket reduced to its slice's rank when sharded) before the clip.
            float norm = Optimizer.Step(adam, Options.MaxGradNorm);
            // AdamW runs on the device while the host adds up the metrics.
            for (int k = 0; k < microBatches.Count; k++)
                AddMicroBatchMetrics(batch, microBatches[k], k, source, precomputedOld, rollouts, keptSequence, comparesSampler: m == 0 || precomputedOld is not null, sums);
            sums.AllReduce(World);
            perMiniBatch.Add(new MiniBatchMetrics(sums.PolicyGradient, sums.Kl, sums.ClipFraction, sums.ClipLow, sums.ClipHigh, sums.PpoKl, norm, sums.Tokens));
            step.Add(sums);
        }

        double entropyEstimate = step.Tokens == 0 ? 0 : step.SumNegOldLogProb / step.Tokens;
        if (Options.FixedEntropyCoefficient is null && step.Tokens > 0)
            Controller = EntropyController.Update(Controller, entropyEstimate, Options.EntropyControl);
        int steps = perMiniBatch.Count;
        var tiling = _backend.PlanLogProb(largestMicroBatch, _policy.Config.VocabSize, _policy.Config.HiddenSize, _policy.Storage);
        return metrics with
        {
            LogProbRowBlock = tiling.RowBlock,
            LogProbVocabChunk = tiling.VocabChunk,
            LogProbScratchMib = tiling.ScratchBytes / 1048576.0,
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
                // Checked for the whole batch before any micro-batch runs, so a bad id never leaves a step half done.
                var tokens = batch.Tokens.Slice(batch.SequenceStart(s), batch.SequenceLength(s));
                int bad = tokens.IndexOfAnyExceptInRange(0, vocab - 1);
                if (bad >= 0)
                    throw new ArgumentException($"group '{name}': token id {tokens[bad]} at position {bad} of sequence {s - batch.GroupStart(g)} is outside the vocabulary [0, {vocab})", nameof(rollouts));
                var logProbs = rollouts.SamplerLogProbs[s];
                if (logProbs is not null && logProbs.Count != batch.ResponseLength(s))
                    throw new ArgumentException($"group '{name}': {logProbs.Count} old log-probs for {batch.ResponseLength(s)} response tokens");
                if (logProbs is null && Options.OldLogProbs == OldLogProbSource.Sampler)
                    throw new ArgumentException($"group '{name}': a response has no log-probs from the rollout engine, which old_logprobs = sampler needs (or use recompute)");
                if (!double.IsFinite(rollouts.Rewards[s])) throw new ArgumentException($"group '{name}': reward {rollouts.Rewards[s]} is not finite");
            }
        }
    }

    /// <summary>Group-relative advantages of the kept sequences, on the device, one per sequence (a view of a buffer reused step to step).</summary>
    private Tensor Advantages(RolloutBatch rollouts, int[] keptSequence, ResponseBatch batch)
    {
        int n = keptSequence.Length;
        if (_rewards is null || _rewards.ElementCount < n)
        {
            _rewards?.Dispose();
            _advantages?.Dispose();
            _groupOffsets?.Dispose();
            int capacity = Math.Max(n, _hostRewards.Length + _hostRewards.Length / 2);
            _hostRewards = new float[capacity];
            _rewards = _backend.Allocate(DType.Float32, new TensorShape(capacity), "rewards");
            _advantages = _backend.Allocate(DType.Float32, new TensorShape(capacity), "advantages");
            // Every group has at least one sequence, so the group offsets never outnumber the sequences + 1.
            _groupOffsets = _backend.Allocate(DType.Int32, new TensorShape(capacity + 1), "group offsets");
        }
        for (int i = 0; i < n; i++) _hostRewards[i] = (float)rollouts.Rewards[keptSequence[i]];
        var rewards = _rewards.SliceRows(0, n);
        var advantages = _advantages!.SliceRows(0, n);
        _backend.Upload<float>(_hostRewards.AsSpan(0, n), rewards);
        using var groups = Segments.FromOffsets(batch.GroupOffsets, _groupOffsets!);
        _backend.GrpoAdvantages(rewards, groups, (float)Options.AdvantageEpsilon, advantages);
        return advantages;
    }

    /// <summary>The kept groups' split into mini-batches: [g0, g1) per mini-batch, as equal as counts allow.</summary>
    private static List<(int First, int End)> MiniBatchGroups(int groups, int count)
    {
        count = Math.Min(count, groups);
        var chunks = new List<(int, int)>(count);
        for (int m = 0; m < count; m++) chunks.Add(((int)((long)groups * m / count), (int)((long)groups * (m + 1) / count)));
        return chunks;
    }

    /// <summary>
    /// Deals each mini-batch's kept groups to the ranks by tokens (a group's forward and backward take about as long as its
    /// sequences are long): the longest group first, each to the rank with the fewest tokens so far (ties: the lower
    /// rank), so that no rank waits long for the others at the gradient sum. Every rank computes the same deal. Returns
    /// the groups reordered so that each rank's share of each mini-batch is contiguous (rank 0's first, each in batch
    /// order) and, per mini-batch, each rank's number of groups.
    /// </summary>
    private static (int[] Ordered, int[][] Counts) DealByTokens(int[] kept, List<(int First, int End)> chunks, int world, ResponseBatch all)
    {
        // Each kept group's tokens (prompt and responses of all its sequences), once.
        var tokens = kept.Select(group =>
        {
            long sum = 0;
            for (int s = all.GroupStart(group); s < all.GroupStart(group) + all.GroupSize(group); s++) sum += all.SequenceLength(s);
            return sum;
        }).ToArray();
        var ordered = new int[kept.Length];
        var counts = new int[chunks.Count][];
        var load = new long[world];
        for (int c = 0; c < chunks.Count; c++)
        {
            var (first, end) = chunks[c];
            Array.Clear(load);
            var owner = new int[end - first];
            foreach (int t in Enumerable.Range(first, end - first).OrderByDescending(t => tokens[t]).ThenBy(t => t))
            {
                int least = 0;
                for (int r = 1; r < world; r++)
                    if (load[r] < load[least]) least = r;
                owner[t - first] = least;
                load[least] += tokens[t];
            }
            counts[c] = new int[world];
            int at = first;
            for (int r = 0; r < world; r++)
                for (int t = first; t < end; t++)
                    if (owner[t - first] == r)
                    {
                        ordered[at++] = kept[t];
                        counts[c][r]++;
                    }
        }
        return (ordered, counts);
    }

    /// <summary>
    /// Each mini-batch's sequences (those with response tokens), and this rank's share of each: the whole mini-batch in one
    /// process, else the contiguous range of its groups (empty when it holds none; <paramref name="counts"/> from
    /// <see cref="DealByTokens"/>).
    /// </summary>
    private static (List<SequenceRange> Global, List<SequenceRange> Local) MiniBatchRanges(ResponseBatch batch, List<(int First, int End)> chunks, int[][]? counts, int rank)
    {
        var global = new List<SequenceRange>(chunks.Count);
        var local = new List<SequenceRange>(chunks.Count);
        int End(int g) => g < batch.GroupCount ? batch.GroupStart(g) : batch.SequenceCount;
        for (int c = 0; c < chunks.Count; c++)
        {
            var (g0, g1) = chunks[c];
            var range = batch.Range(batch.GroupStart(g0), End(g1));
            if (range.ResponseTokens == 0) continue;
            global.Add(range);
            int offset = counts is null ? 0 : counts[c].Take(rank).Sum(), count = counts is null ? g1 - g0 : counts[c][rank];
            int first = g0 + offset;
            local.Add(count == 0 ? default : batch.Range(batch.GroupStart(first), End(first + count)));
        }
        return (global, local);
    }

    /// <summary>
    /// The GPU communicator for gradients in device memory: NCCL over the world's ranks on the Cuda backend (null elsewhere,
    /// or when NCCL cannot be loaded: the gradients are then staged through the host, and <paramref name="path"/> says why).
    /// </summary>
    private static OR1.Native.Distributed.NcclCollectives? DeviceCommunicator(IBackend backend, OR1.Native.Distributed.ICollectives world, out string? path)
    {
        path = null;
        if (world.WorldSize == 1 || backend is not OR1.Native.Cuda.CudaBackend cuda) return null;
        try
        {
            return OR1.Native.Distributed.NcclCollectives.Create(cuda, world);
        }
        catch (OR1.Native.Distributed.NcclUnavailableException e)
        {
            path = $"staged through the host ({e.Message})";
            return null;
        }
    }

    private enum OldSource { ThisForward, Precomputed, Sampler }

    /// <summary>Sums over a mini-batch's micro-batches (loss terms are weighted means, so they add up).</summary>
    private sealed class StepSums
    {
        public double PolicyGradient, Kl, ClipFraction, ClipLow, ClipHigh, PpoKl, SumNegOldLogProb, SumEntropy, DiffSum, DiffMax;
        public int Tokens, DiffTokens;

        /// <summary>Every rank's sums added (the maximum of the maxima): the mini-batch's, not this rank's share.</summary>
        public void AllReduce(OR1.Native.Distributed.ICollectives world)
        {
            if (world.WorldSize == 1) return;
            Span<double> v = [PolicyGradient, Kl, ClipFraction, ClipLow, ClipHigh, PpoKl, SumNegOldLogProb, SumEntropy, DiffSum, Tokens, DiffTokens];
            world.AllReduceSum(v);
            (PolicyGradient, Kl, ClipFraction, ClipLow, ClipHigh, PpoKl, SumNegOldLogProb, SumEntropy, DiffSum) = (v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]);
            Tokens = (int)v[9];
            DiffTokens = (int)v[10];
            Span<double> most = [DiffMax];
            world.AllReduceMax(most);
            DiffMax = most[0];
        }

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

    /// <summary>
    /// Issues micro-batch <paramref name="k"/> of the mini-batch: forward, loss, backward (gradients +=). It never waits
    /// for the device; its log-probs, entropies and loss terms land in the read-back buffer for <see cref="AddMicroBatchMetrics"/>.
    /// </summary>
    private void TrainMicroBatch(ResponseBatch batch, SequenceRange range, int k, SequenceRange mini, Tensor advantages, OldSource oldSource,
        RolloutBatch rollouts, int[] keptSequence, float alpha, Action<long>? gradientsFinalFrom)
    {
        using var micro = Load(batch, range);
        int n = range.TokenCount;
        float weight = (float)LossWeights.TokenWeight(Options.Aggregation, range.ResponseTokens, range.SequenceCount, mini.ResponseTokens, mini.SequenceCount);
        float[] host = Scratch(ref _hostScratch, n);
        Array.Clear(host, 0, n);
        ForEachResponseToken(batch, range, (s, j, p) => host[p] = weight);
        _backend.Upload<float>(host.AsSpan(0, n), micro.Weights);
        _backend.BroadcastSegments(advantages.SliceRows(range.FirstSequence, range.SequenceCount), micro.Packed.Sequences, micro.Advantages);

        var logProbs = _readback.LogProbs(k);
        var entropy = _readback.Entropy(k);
        var oldLogProbs = micro.OldLogProbs;
        var act = Arena(ref _activations, _policy.Config, n);
        _policy.Forward(micro.Packed, act);
        _policy.LogProbs(act, micro.Targets, Options.Temperature, logProbs, entropy);
        switch (oldSource)
        {
            case OldSource.ThisForward:
                // On-policy: the behaviour policy is this very forward pass, detached, bit for bit.
                _backend.Copy(logProbs, micro.OldLogProbs);
                break;
            case OldSource.Precomputed:
                // Still on the device from ForwardLogProbs.
                oldLogProbs = _oldLogProbs!.SliceRows(range.TokenStart, n);
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
        _backend.PolicyLossForward(logProbs, oldLogProbs, micro.Advantages, entropy, micro.Weights, referenceLogProbs, lossOptions, _readback.LossTerms(k));
        _backend.PolicyLossBackward(logProbs, oldLogProbs, micro.Advantages, micro.Weights, referenceLogProbs, lossOptions, micro.DLogProbs, micro.DEntropy);
        _policy.Backward(micro.Packed, act, micro.Targets, Options.Temperature, micro.DLogProbs, alpha != 0 ? micro.DEntropy : null, entropy, Optimizer.Gradients,
            gradientsFinalFrom);
    }

    /// <summary>
    /// Adds micro-batch <paramref name="k"/>'s share of the metrics from the downloaded read-back: its loss terms, and over
    /// its response tokens e_k (mean -logp_old), the mean entropy, and how far the rollout engine's log-probs are from the
    /// trainer's pre-update ones.
    /// </summary>
    private void AddMicroBatchMetrics(ResponseBatch batch, SequenceRange range, int k, OldSource oldSource, float[]? precomputedOld,
        RolloutBatch rollouts, int[] keptSequence, bool comparesSampler, StepSums sums)
    {
        var terms = _readback.HostLossTerms(k);
        sums.PolicyGradient += terms[PolicyLossTerms.PolicyGradient];
        sums.Kl += terms[PolicyLossTerms.Kl];
        sums.ClipFraction += terms[PolicyLossTerms.ClipFraction];
        sums.ClipLow += terms[PolicyLossTerms.ClipFractionLow];
        sums.ClipHigh += terms[PolicyLossTerms.ClipFractionHigh];
        sums.PpoKl += terms[PolicyLossTerms.PpoKl];
        sums.Tokens += range.ResponseTokens;

        float[] values = _readback.HostArray;
        int logProbAt = _readback.LogProbStart(k), entropyAt = _readback.EntropyStart(k);
        ForEachResponseToken(batch, range, (s, j, p) =>
        {
            float logProb = values[logProbAt + p];
            float old = oldSource switch
            {
                OldSource.ThisForward => logProb,
                OldSource.Precomputed => precomputedOld![range.TokenStart + p],
                _ => rollouts.SamplerLogProbs[keptSequence[s]]![j],
            };
            sums.SumNegOldLogProb -= old;
            sums.SumEntropy += values[entropyAt + p];
            var samplerValues = rollouts.SamplerLogProbs[keptSequence[s]];
            if (samplerValues is null || !comparesSampler) return;
            // The trainer's pre-update log-prob: the precomputed one, or this forward's (first mini-batch: nothing updated yet).
            float trainer = oldSource == OldSource.Precomputed ? precomputedOld![range.TokenStart + p] : logProb;
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

    /// <summary>
    /// Log-probs of every packed position under the current policy (no gradient), before any update: they stay on the
    /// device (the micro-batches read their old log-probs from there) and come to the host in one copy, for the metrics.
    /// </summary>
    private float[] ForwardLogProbs(ResponseBatch batch, List<SequenceRange> localRanges)
    {
        int total = batch.TokenCount;
        if (_oldLogProbs is null || _oldLogProbs.ElementCount < total)
        {
            int capacity = (int)Math.Max(total, (_oldLogProbs?.ElementCount ?? 0) * 3 / 2);
            _oldLogProbs?.Dispose();
            _oldLogProbs = _backend.Allocate(DType.Float32, new TensorShape(capacity), "old log-probs");
        }
        // This rank's shares only: the other ranks' sequences are theirs to train (and their entries are never read here).
        foreach (var range in localRanges.Where(r => r.SequenceCount > 0).SelectMany(r => batch.SplitByTokens(r.FirstSequence, r.EndSequence, Options.MicroBatchTokens)))
        {
            using var micro = Load(batch, range);
            var act = Arena(ref _activations, _policy.Config, range.TokenCount);
            _policy.Forward(micro.Packed, act);
            _policy.LogProbs(act, micro.Targets, Options.Temperature, _oldLogProbs.SliceRows(range.TokenStart, range.TokenCount), micro.Entropy);
        }
        float[] result = Scratch(ref _hostOldLogProbs, total);
        _backend.Download<float>(_oldLogProbs.SliceRows(0, total), result.AsSpan(0, total));
        return result;
    }

    /// <summary>
    /// A micro-batch's inputs on the device. The buffers are sized once for the micro-batch budget (as the activation
    /// arena is), so micro-batches of varying length allocate nothing after the first.
    /// </summary>
    private MicroBatch Load(ResponseBatch batch, SequenceRange range)
    {
        _buffers.Reserve(Math.Max(range.TokenCount, Math.Min(Options.MicroBatchTokens, 1 << 16)));
        return _buffers.Load(batch, range);
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
            arena = new Qwen2Activations(_backend, config, Math.Max(tokens, Math.Min(Options.MicroBatchTokens, 1 << 16)), _policy.Storage, Options.Recompute);
        }
        return arena;
    }

    public void Dispose()
    {
        _activations?.Dispose();
        _referenceActivations?.Dispose();
        _buffers.Dispose();
        _readback.Dispose();
        _rewards?.Dispose();
        _advantages?.Dispose();
        _groupOffsets?.Dispose();
        _oldLogProbs?.Dispose();
        Optimizer.Dispose();
        _nccl?.Dispose();
    }
}

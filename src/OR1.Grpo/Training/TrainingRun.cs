using System.Diagnostics;
using System.Text.Json;
using OR1.Grpo.Checkpoints;
using OR1.Grpo.Data;
using OR1.Grpo.Evaluation;
using OR1.Grpo.Rewards;
using OR1.Grpo.Rollout;
using OR1.Model;
using OR1.Model.Generation;
using OR1.Model.Tokenization;
using OR1.Native;

namespace OR1.Grpo.Training;

/// <summary>
/// A whole MAGIC training run (docs/RECIPE.md): stages of steps, each step drawing prompts, rolling out G
/// responses, scoring them and updating the policy; validation every N steps; atomic checkpoints with
/// everything needed to resume exactly; metrics.jsonl and a console line per step.
/// <para>Data parallel (started by mpirun: <see cref="World"/> of N ranks, each running this with the same config): every
/// rank draws the same prompts, generates and scores prompt i of the batch when i mod N is its rank (with the random
/// streams one process would use for it) and the ranks exchange the groups (<see cref="RolloutExchange"/>), so each
/// holds the whole batch; the trainer then splits the kept groups over the ranks and sums the gradients
/// (<see cref="MagicTrainer.World"/>), and validation splits its chunks the same way. Every rank takes the same update;
/// rank 0 alone writes metrics, validation records and checkpoints (the optimizer's moments gathered from the ranks'
/// slices first). The result is one process's run up to the order of floating-point sums.</para>
/// </summary>
public sealed class TrainingRun : IDisposable
{
    private const int MaxConsecutiveSkips = 64;
    private readonly TrainingConfig _config;
    private readonly Qwen2Model _policy;
    private readonly Qwen2Model? _reference;
    private readonly string _tokenizerDir;
    private readonly IReadOnlyList<RlExample> _train;
    private readonly IReadOnlyList<RlExample> _validation;
    private readonly MagicTrainer _trainer;
    private readonly Qwen2Generator _generator;
    private readonly RolloutCollector _collector;
    private readonly CheckpointStore _checkpoints;
    private readonly TextWriter _log;
    private readonly OR1.Model.Checkpoints.SafetensorsDType _saveDType;
    private readonly OR1.Native.Distributed.ICollectives _world;
    private TrainerState _state = new();
    private PromptSampler? _sampler;

    /// <param name="config">The run.</param>
    /// <param name="policy">The model to train (its weights are the starting point, or were loaded from a checkpoint).</param>
    /// <param name="encoder">The model's tokenizer with its chat template; it caches each prompt's tokens (share it with the data loading).</param>
    /// <param name="tokenizerDir">Folder whose tokenizer files are copied into checkpoints.</param>
    /// <param name="rewards">Verifiers.</param>
    /// <param name="train">Training examples (already filtered and mixed).</param>
    /// <param name="validation">Validation examples (may be empty).</param>
    /// <param name="log">Where the per-step lines go.</param>
    /// <param name="world">The data-parallel ranks (one process when null); every rank builds its run with the same arguments.</param>
    public TrainingRun(TrainingConfig config, Qwen2Model policy, PromptEncoder encoder, string tokenizerDir, RewardRouter rewards,
        IReadOnlyList<RlExample> train, IReadOnlyList<RlExample> validation, TextWriter log, OR1.Native.Distributed.ICollectives? world = null)
    {
        _world = world ?? OR1.Native.Distributed.SingleProcess.Instance;
        _config = config;
        _policy = policy;
        _tokenizerDir = tokenizerDir;
        _train = train;
        _validation = validation;
        _log = log;
        if (train.Count == 0) throw new ArgumentException("no training examples are left after loading and filtering", nameof(train));
        if (config.KlCoef > 0)
        {
            // A frozen copy of the initial policy in the policy's precision (no master: it is never trained).
            _reference = new Qwen2Model(policy.Backend, policy.Config, policy.Precision);
            _reference.Weights.CopyFrom(policy.Weights);
        }
        _trainer = new MagicTrainer(policy, config.MagicOptions(config.Stages[0]), _reference, _world);
        int longestPrompt = train.Concat(validation).Max(e => encoder.Encode(e).Length);
        int longestResponse = Math.Max(config.Stages.Max(s => s.MaxResponseLength), ValidationMaxNewTokens);
        int slots = Math.Min(config.RolloutBatch, Math.Max(config.Stages.Max(s => s.PromptsPerStep * s.GroupSize), Math.Max(1, validation.Count) * config.ValidationK));
        try
        {
            _generator = new Qwen2Generator(policy, slots, longestPrompt + longestResponse, kvCacheBytes: config.KvCacheMemoryBytes,
                deviceGraphs: config.CudaGraphs, decodeStepsPerSync: config.DecodeStepsPerSync);
        }
        catch (ArgumentException e) when (e.ParamName == "kvCacheBytes")
        {
            throw new ArgumentException($"kv_cache_memory_bytes = {config.KvCacheMemoryBytes}: {e.Message}", nameof(config), e);
        }
        _collector = new RolloutCollector(_generator, encoder, rewards, PromptEncoder.StopTokens(encoder.Tokenizer, policy.Config.EosTokenIds));
        _checkpoints = new CheckpointStore(config.OutputDir, config.KeepCheckpoints);
        // Checkpoints in the dtype asked for, else the starting checkpoint's (a bf16 model stays bf16 on disk).
        _saveDType = config.SaveDtype is { } saveAs ? saveAs.SafetensorsDType() : Qwen2ModelFiles.CheckpointDType(policy.Config);
        Directory.CreateDirectory(config.OutputDir);
        if (Writes && _checkpoints.SpaceNote(CheckpointBytes) is { } note) _log.WriteLine(note);
        // The ranks read their config, data and model from their own disks: the same files, or every rank stops here.
        // (micro_batch_tokens: auto may resolve differently on ranks with different free memory; that is a rank's own business.)
        RankAgreement.Check(_world,
            ("the config", RankAgreement.Fingerprint(config with { MicroBatchTokens = 0 })),
            ("the training data", RankAgreement.Fingerprint(train)),
            ("the validation data", RankAgreement.Fingerprint(validation)),
            ("the model's weights", RankAgreement.Fingerprint(policy.Weights)));
    }

    private int ValidationMaxNewTokens => _config.ValidationMaxNewTokens ?? _config.Stages[^1].MaxResponseLength;

    public string MetricsPath => Path.Combine(_config.OutputDir, "metrics.jsonl");
    public string ValidationPath => Path.Combine(_config.OutputDir, "validation.jsonl");

    /// <summary>The data-parallel ranks (one process unless started by mpirun).</summary>
    public OR1.Native.Distributed.ICollectives World => _world;

    /// <summary>Whether this process writes the run's files (rank 0; the only one in a single process).</summary>
    private bool Writes => _world.Rank == 0;

    /// <summary>The run's checkpoint folders.</summary>
    internal CheckpointStore Checkpoints => _checkpoints;

    /// <summary>The trainer (weights, moments, controller).</summary>
    public MagicTrainer Trainer => _trainer;

    /// <summary>Raised after every step (skipped ones included), after its metrics line is written.</summary>
    public event Action<StepMetrics>? StepCompleted;

    /// <summary>Raised after each validation with the step and temperature it ran at.</summary>
    public event Action<int, float, IReadOnlyList<EvalScore>>? ValidationCompleted;

    /// <summary>Restores trainer state, optimizer moments and logs from a checkpoint folder (weights are loaded by the caller).</summary>
    public void ResumeFrom(string checkpointDir)
    {
        _state = TrainerState.Load(checkpointDir);
        int savedWorld = Math.Max(1, _state.WorldSize);
        if (savedWorld != _world.WorldSize)
            _log.WriteLine($"note: {checkpointDir} was saved by a run of {savedWorld} rank{(savedWorld == 1 ? "" : "s")}, this one has {_world.WorldSize}: " +
                           "the prompts, samples and updates do not depend on the ranks, so the run continues the same up to the order of floating-point sums " +
                           "(the per-rank throughput and memory change)");
        OptimizerCheckpoint.Load(checkpointDir, _trainer.Optimizer);
        _trainer.Optimizer.Steps = _state.OptimizerSteps;
        _trainer.Controller = new EntropyControlState(_state.EntropyCoefficient, _state.EntropyEnabled);
        // Logs written after this checkpoint belong to the interrupted run's lost steps: drop them.
        if (Writes)
        {
            TruncateLog(MetricsPath, _state.Attempts);
            TruncateLog(ValidationPath, _state.Attempts);
        }
        _log.WriteLine($"resumed from {checkpointDir} at step {_state.Attempts}, update {_state.GlobalStep} (stage {_state.Stage + 1}, update {_state.StepInStage} of it)");
    }

    /// <summary>
    /// Trains until every stage is done, or until <paramref name="stopAfterStep"/> completed steps (a
    /// deliberate interruption, used to test resumption).
    /// </summary>
    public void Run(int? stopAfterStep = null, CancellationToken cancellation = default)
    {
        bool fresh = _state.GlobalStep == 0 && _state.Attempts == 0;
        if (fresh && _validation.Count > 0) Validate();
        int consecutiveSkips = 0;
        while (_state.Stage < _config.Stages.Count)
        {
            var stage = _config.Stages[_state.Stage];
            _trainer.Options = _config.MagicOptions(stage);
            _sampler ??= CreateSampler(_state.Stage, stage);
            while (_state.StepInStage < stage.Steps)
            {
                cancellation.ThrowIfCancellationRequested();
                if (stopAfterStep is { } stop && _state.GlobalStep >= stop) return;
                var metrics = Step(stage);
                if (metrics.Skipped)
                {
                    if (++consecutiveSkips >= MaxConsecutiveSkips)
                    {
                        string lastGood = _checkpoints.Latest() is { } checkpoint ? $"the last good checkpoint is {checkpoint}" : "no checkpoint was written yet";
                        throw new TrainingStalledException(
                            $"{MaxConsecutiveSkips} consecutive steps had no group with mixed rewards; the data is too easy or too hard for this policy " +
                            $"(check the difficulty filter and the warm-up). Training stopped at step {_state.Attempts} after {_state.GlobalStep} updates; " +
                            $"{lastGood}; metrics are in {MetricsPath}.");
                    }
                    continue;
                }
                consecutiveSkips = 0;
                bool last = _state.Stage == _config.Stages.Count - 1 && _state.StepInStage == stage.Steps;
                if (_state.GlobalStep % _config.ValidateEvery == 0 || last)
                {
                    if (_validation.Count > 0) Validate();
                }
                if (_state.GlobalStep % _config.CheckpointEvery == 0 || last) SaveCheckpoint();
            }
            EndStage();
        }
    }

    /// <summary>
    /// One step: a rollout batch and, unless every group has equal rewards (then the step is skipped), one update.
    /// Every step has its own number (<see cref="StepMetrics.Step"/>, counting skipped ones); a stage counts updates.
    /// </summary>
    private StepMetrics Step(StageConfig stage)
    {
        var prompts = _sampler!.NextBatch();
        ulong seed = StepSeed(_config.Seed, _state.Attempts);
        var sampling = new SamplingOptions(_config.Temperature, _config.TopP);
        Rollouts responses;
        if (_world.WorldSize == 1) responses = _collector.Collect(prompts, stage.GroupSize, stage.MaxResponseLength, sampling, seed);
        else
        {
            // This rank's prompts (i mod N), drawing the streams of their places in the whole batch; then every rank's groups.
            int[] mine = RolloutExchange.PromptsOfRank(prompts.Count, _world.WorldSize, _world.Rank);
            var own = _collector.Collect(mine.Select(i => prompts[i]).ToArray(), stage.GroupSize, stage.MaxResponseLength, sampling, seed, promptStreams: mine);
            responses = RolloutExchange.AllGather(_world, own, mine, prompts);
        }
        var metrics = _trainer.Step(responses.Batch);

        var solved = new Dictionary<string, bool>(_state.StageSolvedAll);
        for (int g = 0; g < responses.Examples.Count; g++)
            solved[responses.Examples[g].Id] = responses.Batch.GroupRewards(g).All(r => r >= 1);
        int updates = metrics.Skipped ? _state.GlobalStep : _state.GlobalStep + 1;
        _state = _state with
        {
            Attempts = _state.Attempts + 1,
            GlobalStep = updates,
            StepInStage = metrics.Skipped ? _state.StepInStage : _state.StepInStage + 1,
            OptimizerSteps = _trainer.Optimizer.Steps,
            EntropyCoefficient = _trainer.Controller.Coefficient,
            EntropyEnabled = _trainer.Controller.Enabled,
            StageSolvedAll = solved,
        };
        metrics = metrics with
        {
            Step = _state.Attempts,
            Updates = updates,
            Stage = _state.Stage + 1,
            GenerateSeconds = responses.GenerateSeconds,
            PrefillTokensPerSecond = responses.Engine.PrefillTokensPerSecond,
            DecodeTokensPerSecond = responses.Engine.DecodeTokensPerSecond,
            RolloutOccupancy = responses.Engine.MeanOccupancy,
            RolloutOccupancyWhileQueued = responses.Engine.MeanOccupancyWhileQueued,
            RolloutPreemptions = responses.Engine.Preemptions,
            RolloutTruncatedMass = responses.Engine.MeanTruncatedMass,
            RewardSeconds = responses.RewardSeconds,
        };
        if (Writes) File.AppendAllText(MetricsPath, JsonSerializer.Serialize(metrics, MetricsJson.Lines) + "\n");
        _log.WriteLine(metrics.Skipped
            ? $"step {metrics.Step,5} stage {metrics.Stage}  skipped: no group with mixed rewards ({metrics.SolveNone} solve-none, {metrics.SolveAll} solve-all)"
            : $"step {metrics.Step,5} stage {metrics.Stage}  reward {metrics.RewardMean:F3}  kept {metrics.KeptGroups}/{metrics.Groups}  len {metrics.ResponseLengthMean:F1}  trunc {metrics.TruncationRatio:P0}  " +
              $"entropy {metrics.Entropy:F3}  c {metrics.EntropyCoefficient:G3}{(metrics.EntropyEnabled ? "" : " (off)")}  pg {SignedNumber.Format(metrics.PolicyLoss, 4)}  " +
              $"clip {metrics.ClipFraction:P1}  |g| {metrics.GradNorm:F3}  " +
              $"{metrics.GenerateTokensPerSecond:F0} gen + {metrics.UpdateTokensPerSecond:F0} train tok/s");
        StepCompleted?.Invoke(metrics);
        return metrics;
    }

    /// <summary>Stage transition: drop the prompts whose latest group in this stage was solved by every sample.</summary>
    private void EndStage()
    {
        var solved = _state.StageSolvedAll.Where(kv => kv.Value).Select(kv => kv.Key).ToArray();
        var removed = _state.RemovedIds.Concat(solved).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        if (_state.Stage + 1 < _config.Stages.Count)
            _log.WriteLine($"stage {_state.Stage + 1} done: dropping {solved.Length} prompts solved by every sample ({removed.Length} dropped so far)");
        _state = _state with { Stage = _state.Stage + 1, StepInStage = 0, RemovedIds = removed, StageSolvedAll = new Dictionary<string, bool>(), Sampler = null };
        _sampler = null;
    }

    private PromptSampler CreateSampler(int stageIndex, StageConfig stage)
    {
        var removed = new HashSet<string>(_state.RemovedIds, StringComparer.Ordinal);
        var active = _train.Where(e => !removed.Contains(e.Id)).ToArray();
        if (active.Length < stage.PromptsPerStep)
            throw new InvalidOperationException($"stage {stageIndex + 1} needs {stage.PromptsPerStep} prompts per step but only {active.Length} remain after dropping solved prompts");
        var sampler = new PromptSampler(active, stage.PromptsPerStep, StepSeed(_config.Seed, 1_000_000 + stageIndex));
        if (_state.Sampler is { } saved) sampler.RestoreState(saved);
        return sampler;
    }

    private void Validate()
    {
        foreach (float temperature in _config.ValidationTemperatures)
        {
            var (scores, _) = Evaluator.Run(_collector, _validation, _config.ValidationK, new SamplingOptions(temperature, 1f), ValidationMaxNewTokens,
                StepSeed(_config.Seed, 2_000_000 + _state.GlobalStep), world: _world);
            foreach (var s in scores)
            {
                var line = new { step = _state.Attempts, updates = _state.GlobalStep, temperature, data_source = s.DataSource, problems = s.Problems, k = s.K, avg_at_k = s.AvgAtK, pass_at_1 = s.PassAt1, pass_at_k = s.PassAtK };
                if (Writes) File.AppendAllText(ValidationPath, JsonSerializer.Serialize(line, MetricsJson.Lines) + "\n");
                _log.WriteLine($"validation step {_state.Attempts} T={temperature:0.##} {s.DataSource}: avg@{s.K} {s.AvgAtK:P1}  pass@1 {s.PassAt1:P1}  pass@{s.K} {s.PassAtK:P1} ({s.Problems} problems)");
            }
            ValidationCompleted?.Invoke(_state.Attempts, temperature, scores);
        }
    }

    /// <summary>
    /// Writes weights, tokenizer, optimizer moments and trainer state, atomically. Data parallel, every rank calls it:
    /// rank 0 writes, streaming each tensor into its file as the ranks that hold its slices send it; the others return null.
    /// </summary>
    public string? SaveCheckpoint()
    {
        var state = _state with { Sampler = _sampler?.SaveState(), WorldSize = _world.WorldSize };
        var optimizer = _trainer.Optimizer;
        if (!Writes)
        {
            OptimizerCheckpoint.FollowWeights(_policy.Config, optimizer);
            OptimizerCheckpoint.FollowMoments(optimizer);
            return null;
        }
        // A 7B run's checkpoint is 90 GB and takes minutes: room for it first, then say what is coming and how long it took.
        long bytes = CheckpointBytes;
        _checkpoints.RequireSpace(bytes, state.GlobalStep);
        if (bytes >= 1_000_000_000)
            _log.WriteLine($"checkpoint: writing update {state.GlobalStep} ({bytes / 1e9:F1} GB of weights and moments)");
        var clock = Stopwatch.StartNew();
        string path = _checkpoints.Save(state.GlobalStep, dir =>
        {
            OptimizerCheckpoint.WriteWeights(dir, _policy.Config, optimizer, _saveDType);
            foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
            {
                string source = Path.Combine(_tokenizerDir, file);
                if (File.Exists(source)) File.Copy(source, Path.Combine(dir, file));
            }
            OptimizerCheckpoint.WriteMoments(dir, optimizer);
            state.Save(dir);
        });
        _log.WriteLine($"checkpoint: {path} ({bytes / 1e6:N0} MB in {clock.Elapsed.TotalSeconds:F1} s)");
        return path;
    }

    /// <summary>Bytes of a checkpoint: the weights in the checkpoints' dtype and the two fp32 moments (the rest is a few KB).</summary>
    private long CheckpointBytes =>
        _trainer.Optimizer.Gradients.Named.Sum(p => p.Tensor.ElementCount) * (OR1.Model.Checkpoints.SafetensorsDTypeInfo.SizeOf(_saveDType) + 2L * sizeof(float));

    /// <summary>The folder of the newest checkpoint of this run's output directory.</summary>
    public static string? LatestCheckpoint(string outputDir) => new CheckpointStore(outputDir).Latest();

    /// <summary>Keeps the records of steps up to <paramref name="lastStep"/> (those the checkpoint includes).</summary>
    private static void TruncateLog(string path, int lastStep)
    {
        if (!File.Exists(path)) return;
        var kept = File.ReadAllLines(path).Where(line =>
        {
            using var doc = JsonDocument.Parse(line);
            return doc.RootElement.GetProperty("step").GetInt32() <= lastStep;
        }).ToArray();
        File.WriteAllLines(path, kept);
    }

    /// <summary>A seed per (run seed, counter): SplitMix64 of both, so each attempt samples differently and reproducibly.</summary>
    public static ulong StepSeed(ulong seed, int counter) => CounterRng.Hash(seed, (ulong)counter, 0x5EED);

    public void Dispose()
    {
        _generator.Dispose();
        _trainer.Dispose();
        _reference?.Dispose();
    }
}

using OR1.Grpo.Data;
using OR1.Grpo.Rewards;
using OR1.Grpo.Rollout;
using OR1.Model;
using OR1.Model.Tokenization;
using OR1.Native;

namespace OR1.Grpo.Training;

/// <summary>
/// Builds a <see cref="TrainingRun"/> from a config: model (from the config, or a checkpoint when
/// resuming), tokenizer, training data (read, decoded, difficulty- and length-filtered, mixed),
/// validation data and verifiers, reporting what was skipped and why.
/// </summary>
public static class TrainingSetup
{
    /// <summary>Everything a run owns; dispose it after the run.</summary>
    public sealed class Session(IBackend backend, Qwen2Model model, TrainingRun run) : IDisposable
    {
        public IBackend Backend { get; } = backend;
        public Qwen2Model Model { get; } = model;
        public TrainingRun Run { get; } = run;

        public void Dispose()
        {
            Run.Dispose();
            Model.Dispose();
            Backend.Dispose();
        }
    }

    /// <param name="config">The run.</param>
    /// <param name="createBackend">Backend factory for the config's device.</param>
    /// <param name="verifiers">Reward functions (math, and code when available).</param>
    /// <param name="resumeCheckpoint">A checkpoint folder to continue from, or null for a fresh run.</param>
    /// <param name="log">Progress and data reports.</param>
    /// <param name="world">The data-parallel ranks (one process when null): every rank creates its session with the same arguments.</param>
    public static Session Create(TrainingConfig config, Func<string, IBackend> createBackend, IEnumerable<IRewardFunction> verifiers,
        string? resumeCheckpoint, TextWriter log, OR1.Native.Distributed.ICollectives? world = null)
    {
        world ??= OR1.Native.Distributed.SingleProcess.Instance;
        var backend = createBackend(config.Device);
        Qwen2Model? model = null;
        try
        {
            string weightsDir = resumeCheckpoint ?? config.Model;
            var precision = config.Precision ?? PrecisionInfo.DefaultFor(backend);
            if (!backend.StorageTypes.Contains(precision.StorageType()))
                throw new TrainingConfigException("the config", $"\"precision\" is {precision.Name()}, but the {backend.Kind} backend (device '{config.Device}') computes in fp32; use precision fp32");
            // Planned before the weights are read: a run that cannot fit fails here, and micro_batch_tokens: auto is resolved.
            int shardedRanks = config.ShardOptimizer ? world.WorldSize : 1;
            config = TrainingMemory.Apply(config, Qwen2Config.Load(Path.Combine(weightsDir, "config.json")), precision, backend, log, shardedRanks);
            model = Qwen2ModelFiles.Load(backend, weightsDir, precision, master: true);
            var tokenizer = Qwen2Tokenizer.Load(config.Model);
            var router = new RewardRouter(verifiers, new RewardOptions(config.ZeroRewardForTruncated));
            var encoder = new PromptEncoder(tokenizer);
            var train = LoadTraining(config, encoder, router, log);
            var validation = LoadValidation(config, encoder, router, log);
            var run = new TrainingRun(config, model, encoder, config.Model, router, train, validation, log, world);
            log.WriteLine(StartLine(backend, precision, world, run.Trainer));
            if (resumeCheckpoint is not null) run.ResumeFrom(resumeCheckpoint);
            return new Session(backend, model, run);
        }
        catch
        {
            model?.Dispose();
            backend.Dispose();
            throw;
        }
    }

    /// <summary>The run's start-up line: backend, precision, world size and, with several ranks, how gradients and optimizer state are split.</summary>
    public static string StartLine(IBackend backend, Precision precision, OR1.Native.Distributed.ICollectives world, MagicTrainer trainer)
    {
        string line = $"train: {backend.Description}, {precision.Name()}, world size {world.WorldSize}";
        if (world.WorldSize == 1) return line;
        var optimizer = trainer.Optimizer;
        string state = optimizer.IsSharded
            ? $"optimizer sharded (ZeRO-1): {optimizer.MomentBytes / 1048576.0:F1} MiB of Adam moments on this rank, 1/{world.WorldSize} of the model's"
            : $"optimizer whole on every rank ({optimizer.MomentBytes / 1048576.0:F1} MiB of Adam moments)";
        return $"{line} ({world.Description}; gradients {trainer.CollectivesPath}, {optimizer.ReductionDescription}; {state}); rank 0 writes the run's files";
    }

    private static IReadOnlyList<RlExample> LoadTraining(TrainingConfig config, PromptEncoder encoder, RewardRouter router, TextWriter log)
    {
        var report = new DataLoadReport();
        IReadOnlyList<RlExample> examples = DatasetReader.ReadAll(config.TrainFiles, report);
        if (config.DifficultyBaseModel is { } baseModel) examples = DatasetFilters.ByDifficulty(examples, baseModel, report);
        examples = DatasetFilters.ByPromptLength(examples, e => encoder.Encode(e).Length, config.MaxPromptLength, report);
        var unscorable = examples.Where(e => !router.CanScore(e.GroundTruth)).ToArray();
        if (unscorable.Length > 0)
            log.WriteLine($"warning: {unscorable.Length} training examples ({unscorable[0].Ability}) have no verifier in this build and always score 0; first: {unscorable[0].Id}");
        var mixed = DatasetMix.Mix(examples, config.Seed);
        log.WriteLine($"training data: {mixed.Count} prompts after the code x2 + math mix ({report.Summary()})");
        return mixed;
    }

    private static IReadOnlyList<RlExample> LoadValidation(TrainingConfig config, PromptEncoder encoder, RewardRouter router, TextWriter log)
    {
        if (config.ValidationFiles.Count == 0) return [];
        var report = new DataLoadReport();
        var examples = DatasetReader.ReadAll(config.ValidationFiles, report);
        examples = DatasetFilters.ByPromptLength(examples, e => encoder.Encode(e).Length, config.MaxPromptLength, report);
        log.WriteLine($"validation data: {examples.Count} problems ({report.Summary()})");
        return examples;
    }
}

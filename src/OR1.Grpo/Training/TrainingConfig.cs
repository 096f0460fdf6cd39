using System.Text.Json;
using System.Text.Json.Serialization;

namespace OR1.Grpo.Training;

/// <summary>One stage of the schedule (docs/RECIPE.md "Stages").</summary>
/// <param name="Steps">Training steps in this stage.</param>
/// <param name="MaxResponseLength">T: responses stop at this many tokens (context growth happens here).</param>
/// <param name="PromptsPerStep">N prompts drawn per step.</param>
/// <param name="PromptsPerMiniBatch">Prompts per optimizer step; N / this = optimizer steps per rollout batch.</param>
/// <param name="GroupSize">G responses per prompt.</param>
public sealed record StageConfig(int Steps, int MaxResponseLength, int PromptsPerStep, int PromptsPerMiniBatch, int GroupSize);

/// <summary>
/// A training run as JSON (snake_case keys): model, data, stages and every hyper-parameter of the recipe,
/// whose defaults are docs/RECIPE.md's.
/// </summary>
public sealed record TrainingConfig
{
    /// <summary>HF-format model directory (config.json, safetensors, tokenizer.json).</summary>
    [ConfigDescription("a folder path")]
    public string Model { get; init; } = "";
    [ConfigDescription("a list of file paths")]
    public IReadOnlyList<string> TrainFiles { get; init; } = [];
    [ConfigDescription("a list of file paths")]
    public IReadOnlyList<string> ValidationFiles { get; init; } = [];
    [ConfigDescription("a folder path")]
    public string OutputDir { get; init; } = "";
    public ulong Seed { get; init; } = 1;
    public string Device { get; init; } = "cpu";
    /// <summary>fp32 or bf16 (mixed precision); null: bf16 on the CUDA kernels (cuda, emu), fp32 on cpu and ilgpu.</summary>
    public OR1.Model.Precision? Precision { get; init; }
    /// <summary>Dtype of saved checkpoints, fp32 or bf16; null: that of the starting checkpoint.</summary>
    public OR1.Model.Precision? SaveDtype { get; init; }
    public IReadOnlyList<StageConfig> Stages { get; init; } = [];

    /// <summary>Offline difficulty filter: keep rows with 1 &lt;= model_difficulty[this] &lt;= 15; null disables.</summary>
    public string? DifficultyBaseModel { get; init; }
    public int MaxPromptLength { get; init; } = 2048;

    public double LearningRate { get; init; } = 1e-6;
    public double WeightDecay { get; init; } = 0.01;
    public double MaxGradNorm { get; init; } = 1.0;
    public float ClipLow { get; init; } = 0.2f;
    public float ClipHigh { get; init; } = 0.2f;
    public double EntropyTarget { get; init; } = 0.2;
    public double EntropyDelta { get; init; } = 1e-4;
    public double EntropyCoefInit { get; init; }
    public double EntropyCoefMin { get; init; }
    public double EntropyCoefMax { get; init; } = 5e-3;
    public double KlCoef { get; init; }
    public LossAggregation LossAggregation { get; init; } = LossAggregation.TokenMean;
    /// <summary>Source of log p_old: <c>recompute</c> (the trainer's forward, the recipe's) or <c>sampler</c> (the rollout engine's).</summary>
    public OldLogProbSource OldLogprobs { get; init; } = OldLogProbSource.Recompute;
    /// <summary>
    /// Tokens per micro-batch forward/backward, or <c>"auto"</c> (0 here): the largest the memory planner finds room for
    /// (<see cref="OR1.Model.Planning.MemoryPlanner"/>), at least the longest sequence, at most 65,536.
    /// </summary>
    [System.Text.Json.Serialization.JsonConverter(typeof(TokensOrAutoConverter))]
    public int MicroBatchTokens { get; init; } = 8192;
    /// <summary>Activation recomputation (<see cref="OR1.Grpo.Training.MagicOptions.Recompute"/>): same gradients, less memory.</summary>
    public bool Recompute { get; init; }
    /// <summary>Under mpirun, each rank keeps 1/N of the Adam moments (ZeRO-1, <see cref="OR1.Grpo.Training.MagicOptions.ShardOptimizer"/>): the same update.</summary>
    public bool ShardOptimizer { get; init; } = true;
    /// <summary>Under mpirun, sum the gradients during the backward (<see cref="OR1.Grpo.Training.MagicOptions.OverlapGradientReduction"/>; null: on a GPU only): the same sums.</summary>
    public bool? OverlapGradReduce { get; init; }
    /// <summary>Elements per collective of the gradients' sum under mpirun (<see cref="OR1.Grpo.Training.MagicOptions.GradientBucketElements"/>).</summary>
    public int GradBucketElements { get; init; } = AdamWOptimizer.BucketElements;
    public float Temperature { get; init; } = 1f;
    public float TopP { get; init; } = 1f;
    public bool ZeroRewardForTruncated { get; init; } = true;

    /// <summary>Most samples decoded at once (the rollout engine's batch).</summary>
    public int RolloutBatch { get; init; } = 256;
    /// <summary>
    /// The rollout engine's KV-cache memory in bytes; 0 (the default) sizes it for rollout_batch samples of the longest
    /// prompt and response, or half the free memory when that is less. A full cache pre-empts and recomputes samples.
    /// </summary>
    public long KvCacheMemoryBytes { get; init; }
    /// <summary>
    /// Decode steps as device graphs where the backend has them (CUDA graphs; the emulator's recorded launches): true by
    /// default; false launches every op of every step (for profiling, or a driver whose graphs misbehave).
    /// </summary>
    public bool CudaGraphs { get; init; } = true;
    /// <summary>
    /// Decode steps the rollout engine runs on the device before reading their tokens (stop rules applied there); 0 (the
    /// default) means the engine's: 1 on the Cpu backend, 4 elsewhere.
    /// </summary>
    public int DecodeStepsPerSync { get; init; }
    public int CheckpointEvery { get; init; } = 20;
    public int KeepCheckpoints { get; init; } = 3;
    public int ValidateEvery { get; init; } = 20;
    public int ValidationK { get; init; } = 8;
    public IReadOnlyList<float> ValidationTemperatures { get; init; } = [0.6f, 1.0f];
    /// <summary>Null: the last stage's max response length.</summary>
    public int? ValidationMaxNewTokens { get; init; }

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        WriteIndented = true,
        Encoder = OR1.Model.ReadableJson.Encoder,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>
    /// Reads and validates a config; relative paths are resolved against the config file's folder. Every error
    /// names the file, the key (<c>stages[1].group_size</c>), its line and what was expected (see <see cref="ConfigDocument"/>).
    /// </summary>
    public static TrainingConfig Load(string path)
    {
        var document = ConfigDocument.Load(path, Json);
        var config = document.Deserialize<TrainingConfig>();
        string baseDir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string Resolve(string p) => string.IsNullOrEmpty(p) ? p : Path.GetFullPath(p, baseDir);
        config = config with
        {
            Model = Resolve(config.Model),
            OutputDir = Resolve(config.OutputDir),
            TrainFiles = config.TrainFiles.Select(Resolve).ToArray(),
            ValidationFiles = config.ValidationFiles.Select(Resolve).ToArray(),
        };
        config.Validate(path, document.PositionOf);
        return config;
    }

    /// <summary>Checks every field; the message names the file and the field.</summary>
    public void Validate(string source) => Validate(source, positionOf: null);

    /// <summary>
    /// Checks every field; the message names the file, the field and, where <paramref name="positionOf"/> knows
    /// it (<see cref="ConfigDocument.PositionOf"/>), the field's line in the file.
    /// </summary>
    public void Validate(string source, Func<string, ConfigPosition?>? positionOf)
    {
        void Require(bool ok, string field, string problem)
        {
            if (!ok) throw new TrainingConfigException(source, positionOf?.Invoke(field), $"\"{field}\" {problem}");
        }
        Require(!string.IsNullOrWhiteSpace(Model), "model", "is missing");
        Require(TrainFiles.Count > 0, "train_files", "must list at least one parquet or JSONL file");
        Require(!string.IsNullOrWhiteSpace(OutputDir), "output_dir", "is missing");
        Require(Stages.Count > 0, "stages", "must list at least one stage");
        for (int i = 0; i < Stages.Count; i++)
        {
            var s = Stages[i];
            string f = $"stages[{i}]";
            Require(s.Steps >= 1, f + ".steps", $"is {s.Steps}; it must be at least 1");
            Require(s.MaxResponseLength >= 1, f + ".max_response_length", $"is {s.MaxResponseLength}; it must be at least 1");
            Require(s.PromptsPerStep >= 1, f + ".prompts_per_step", $"is {s.PromptsPerStep}; it must be at least 1");
            Require(s.PromptsPerMiniBatch >= 1 && s.PromptsPerStep % s.PromptsPerMiniBatch == 0, f + ".prompts_per_mini_batch",
                $"is {s.PromptsPerMiniBatch}; it must divide prompts_per_step ({s.PromptsPerStep})");
            Require(s.GroupSize >= 2, f + ".group_size", $"is {s.GroupSize}; GRPO needs at least 2 responses per prompt");
        }
        Require(LearningRate >= 0, "learning_rate", "must be non-negative");
        Require(MaxGradNorm > 0, "max_grad_norm", "must be positive");
        Require(ClipLow is >= 0 and < 1, "clip_low", "must be in [0, 1)");
        Require(ClipHigh >= 0, "clip_high", "must be non-negative");
        Require(EntropyCoefMin <= EntropyCoefMax, "entropy_coef_min", "must not exceed entropy_coef_max");
        Require(KlCoef >= 0, "kl_coef", "must be non-negative");
        Require(MicroBatchTokens >= 0, "micro_batch_tokens", "must be positive, or \"auto\"");
        Require(GradBucketElements >= 64 && GradBucketElements % 64 == 0, "grad_bucket_elements", $"is {GradBucketElements}; it must be a positive multiple of 64");
        Require(Temperature > 0, "temperature", "must be positive");
        Require(TopP is > 0 and <= 1, "top_p", "must be in (0, 1]");
        Require(RolloutBatch >= 1, "rollout_batch", "must be positive");
        Require(KvCacheMemoryBytes >= 0, "kv_cache_memory_bytes", "must be 0 (sized for rollout_batch) or a positive byte count");
        Require(DecodeStepsPerSync >= 0, "decode_steps_per_sync", "must be 0 (the engine's default) or a positive count");
        Require(MaxPromptLength >= 1, "max_prompt_length", "must be positive");
        Require(CheckpointEvery >= 1, "checkpoint_every", "must be positive");
        Require(ValidateEvery >= 1, "validate_every", "must be positive");
        Require(ValidationK >= 1, "validation_k", "must be positive");
        Require(ValidationTemperatures.All(t => t >= 0), "validation_temperatures", "must be non-negative");
    }

    /// <summary>The trainer options of stage <paramref name="stage"/>.</summary>
    public MagicOptions MagicOptions(StageConfig stage) => new()
    {
        LearningRate = LearningRate,
        WeightDecay = WeightDecay,
        MaxGradNorm = MaxGradNorm,
        ClipLow = ClipLow,
        ClipHigh = ClipHigh,
        EntropyControl = new EntropyControlOptions(EntropyTarget, EntropyDelta, EntropyCoefInit, EntropyCoefMin, EntropyCoefMax),
        Temperature = Temperature,
        MiniBatches = stage.PromptsPerStep / stage.PromptsPerMiniBatch,
        Aggregation = LossAggregation,
        OldLogProbs = OldLogprobs,
        KlCoefficient = KlCoef,
        MicroBatchTokens = MicroBatchTokens,
        Recompute = Recompute,
        ShardOptimizer = ShardOptimizer,
        OverlapGradientReduction = OverlapGradReduce,
        GradientBucketElements = GradBucketElements,
        MaxResponseLength = stage.MaxResponseLength,
    };

    /// <summary>Total steps over all stages.</summary>
    public int TotalSteps => Stages.Sum(s => s.Steps);
}

/// <summary>A training config that cannot be used, naming the file, the field and, where known, its line and column.</summary>
public sealed class TrainingConfigException : Exception
{
    public TrainingConfigException(string path, string problem) : this(path, null, problem) { }

    public TrainingConfigException(string path, ConfigPosition? position, string problem, Exception? inner = null)
        : base(position is { } p ? $"{path} line {p.Line}, column {p.Column}: {problem}" : $"{path}: {problem}", inner)
    {
        FilePath = path;
        Position = position;
        Problem = problem;
    }

    public string FilePath { get; }

    /// <summary>Where in the file the problem is, when it is at a place in the file.</summary>
    public ConfigPosition? Position { get; }

    /// <summary>The message without the file and the position.</summary>
    public string Problem { get; }
}

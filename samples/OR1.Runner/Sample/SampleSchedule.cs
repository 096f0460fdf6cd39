using System.Text.Json;
using System.Text.Json.Serialization;
using OR1.Grpo.Training;
using OR1.Runner.Cli;

namespace OR1.Runner.Sample;

/// <summary>
/// A user's own schedule for the sample task (`or1 sample --config FILE`): stages and the RL
/// hyper-parameters, snake_case JSON; anything left out keeps the sample's default.
/// </summary>
public sealed record SampleSchedule
{
    public IReadOnlyList<StageConfig>? Stages { get; init; }
    public double? LearningRate { get; init; }
    public double? EntropyTarget { get; init; }
    public double? EntropyDelta { get; init; }
    public double? EntropyCoefMax { get; init; }
    public int? WarmupSteps { get; init; }
    public int? EvalSamples { get; init; }

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    /// <summary>
    /// Applies the file's values over <paramref name="defaults"/>, validating them; errors name the file, the
    /// field and its line, as a training config's do (<see cref="ConfigDocument"/>).
    /// </summary>
    public static SampleSettings Apply(string path, SampleSettings defaults)
    {
        if (!File.Exists(path)) throw new CliException($"--config '{path}': file not found");
        ConfigDocument document;
        SampleSchedule schedule;
        try
        {
            document = ConfigDocument.Load(path, Json);
            schedule = document.Deserialize<SampleSchedule>();
        }
        catch (TrainingConfigException e)
        {
            throw new CliException(e.Message, e);
        }
        var settings = defaults with
        {
            Stages = schedule.Stages ?? defaults.Stages,
            LearningRate = schedule.LearningRate ?? defaults.LearningRate,
            EntropyTarget = schedule.EntropyTarget ?? defaults.EntropyTarget,
            EntropyDelta = schedule.EntropyDelta ?? defaults.EntropyDelta,
            EntropyCoefMax = schedule.EntropyCoefMax ?? defaults.EntropyCoefMax,
            WarmupSteps = schedule.WarmupSteps ?? defaults.WarmupSteps,
            EvalSamples = schedule.EvalSamples ?? defaults.EvalSamples,
        };
        // The same checks as a full training config, reported against this file.
        var check = new TrainingConfig
        {
            Model = "sample",
            TrainFiles = ["sample"],
            OutputDir = "sample",
            Stages = settings.Stages,
            LearningRate = settings.LearningRate,
            EntropyTarget = settings.EntropyTarget,
            EntropyDelta = settings.EntropyDelta,
            EntropyCoefMax = settings.EntropyCoefMax,
        };
        try
        {
            check.Validate(path, document.PositionOf);
        }
        catch (TrainingConfigException e)
        {
            throw new CliException(e.Message, e);
        }
        if (settings.WarmupSteps < 1) throw new CliException(document.Error("warmup_steps", "\"warmup_steps\" must be at least 1").Message);
        if (settings.EvalSamples < 1) throw new CliException(document.Error("eval_samples", "\"eval_samples\" must be at least 1").Message);
        return settings;
    }
}

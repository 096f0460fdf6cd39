using System.Text.Json;
using OR1.Grpo.Data;

namespace OR1.Grpo.Training;

/// <summary>
/// Everything besides weights and optimizer moments that a resumed run needs to continue exactly:
/// counters, the entropy controller, the stage's sampler position, and the per-prompt record the
/// stage transition uses. Saved as trainer_state.json in each checkpoint.
/// </summary>
public sealed record TrainerState
{
    public const string FileName = "trainer_state.json";

    /// <summary>Completed (non-skipped) training steps.</summary>
    public int GlobalStep { get; init; }
    /// <summary>Step attempts including skipped ones: it seeds each attempt's sampling.</summary>
    public int Attempts { get; init; }
    public int Stage { get; init; }
    public int StepInStage { get; init; }
    public int OptimizerSteps { get; init; }
    public double EntropyCoefficient { get; init; }
    public bool EntropyEnabled { get; init; }
    public SamplerState? Sampler { get; init; }
    /// <summary>The data-parallel ranks the run had when it saved this state (0 in checkpoints from before it was recorded: one).</summary>
    public int WorldSize { get; init; }
    /// <summary>Prompts dropped at earlier stage transitions (solved by every sample).</summary>
    public IReadOnlyList<string> RemovedIds { get; init; } = [];
    /// <summary>For each prompt seen in the current stage: whether its latest group was solved by every sample.</summary>
    public IReadOnlyDictionary<string, bool> StageSolvedAll { get; init; } = new Dictionary<string, bool>();

    public void Save(string directory) =>
        File.WriteAllText(Path.Combine(directory, FileName), JsonSerializer.Serialize(this, TrainingConfig.Json));

    public static TrainerState Load(string directory)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) throw new TrainingConfigException(path, "the checkpoint has no trainer state");
        try
        {
            return JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(path), TrainingConfig.Json)
                ?? throw new TrainingConfigException(path, "the trainer state is null");
        }
        catch (JsonException e)
        {
            throw new TrainingConfigException(path, $"the trainer state is not valid: {e.Message}");
        }
    }
}

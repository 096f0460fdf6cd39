namespace OR1.Grpo.Training;

/// <summary>
/// A run that cannot make progress (e.g. too many consecutive rollout batches without a group of mixed rewards); the
/// message says why, where training stopped and which checkpoint is the last good one.
/// </summary>
public sealed class TrainingStalledException(string message) : Exception(message);

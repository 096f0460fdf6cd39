namespace OR1.Grpo.Rewards.Math;

/// <summary>The time budget of one answer was spent (or the caller cancelled).</summary>
internal sealed class MathTimeoutException() : Exception("time limit");

/// <summary>Text that is not a well-formed (or not a safely evaluable) math expression.</summary>
internal sealed class MathParseException(string message) : Exception(message);

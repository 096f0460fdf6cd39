namespace OR1.Grpo.Rewards.Math;

/// <summary>The raw answer text found in a response (not yet normalised) and the rule that found it.</summary>
/// <param name="Text">The answer as written, e.g. <c>\frac{1}{2}</c> from <c>\boxed{\frac{1}{2}}</c>.</param>
/// <param name="Source">The extraction rule that matched.</param>
public sealed record ExtractedAnswer(string Text, AnswerSource Source);

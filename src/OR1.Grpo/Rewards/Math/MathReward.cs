using OR1.Grpo.Data;

namespace OR1.Grpo.Rewards.Math;

/// <summary>
/// The rule-based math verifier (docs/RECIPE.md "Rewards"): extracts the final answer (<see cref="AnswerExtractor"/>),
/// normalises it (<see cref="LatexNormalizer"/>) and compares it with each accepted answer of a
/// <see cref="MathGroundTruth"/> (<see cref="MathEquivalence"/>). 1 if any matches, else 0.
/// Work per answer is bounded by <see cref="MathRewardOptions.TimeLimit"/> (polled in every loop) and by the
/// input caps of <see cref="MathRewardOptions"/>; no exception escapes <see cref="Score"/>.
/// </summary>
public sealed class MathReward(MathRewardOptions? options = null) : IRewardFunction
{
    private const int ReasonChars = 120;

    /// <summary>The limits in force.</summary>
    public MathRewardOptions Options { get; } = options ?? MathRewardOptions.Default;

    /// <inheritdoc />
    public bool CanScore(GroundTruth truth) => truth is MathGroundTruth;

    /// <summary>
    /// 1 when the answer in <paramref name="answer"/> (the text after &lt;/think&gt;) equals one of the accepted
    /// answers, else 0. Reasons: "correct: 1/2 == 0.5 (numeric)", "wrong: extracted '7', expected one of ['5']",
    /// "no answer found", "time limit: ...", "cancelled", "not a math ground truth".
    /// </summary>
    public RewardResult Score(string answer, GroundTruth truth, CancellationToken cancellation)
    {
        var deadline = new Deadline(Options.TimeLimit, cancellation);
        try
        {
            if (truth is not MathGroundTruth math) return RewardResult.Wrong($"not a math ground truth: {truth}");
            if (math.Answers.Count == 0) return RewardResult.Wrong("no accepted answers in the ground truth");

            var extracted = AnswerExtractor.Extract(answer ?? "", Options.MaxAnswerChars, deadline);
            if (extracted is null) return RewardResult.Wrong("no answer found");
            string predicted = LatexNormalizer.Normalize(extracted.Text, deadline);
            if (predicted.Length == 0) return RewardResult.Wrong($"no answer found (empty after normalisation: '{Short(extracted.Text)}')");

            foreach (string expected in math.Answers)
            {
                deadline.CheckNow();
                if (string.IsNullOrWhiteSpace(expected)) continue;
                string target = LatexNormalizer.Normalize(expected, deadline);
                if (MathEquivalence.AreEquivalentNormalized(predicted, target, deadline, Options.MaxNumberDigits, out string rule))
                    return RewardResult.Correct($"correct: {Short(extracted.Text)} == {Short(expected)} ({rule})");
            }
            string accepted = string.Join(", ", math.Answers.Take(8).Select(a => $"'{Short(a)}'"));
            if (math.Answers.Count > 8) accepted += ", ...";
            return RewardResult.Wrong($"wrong: extracted '{Short(extracted.Text)}', expected one of [{accepted}]");
        }
        catch (MathTimeoutException)
        {
            return deadline.Cancelled
                ? RewardResult.Wrong("cancelled")
                : RewardResult.Wrong($"time limit: verification took longer than {Options.TimeLimit.TotalMilliseconds:0} ms");
        }
        catch (OperationCanceledException)
        {
            return RewardResult.Wrong("cancelled");
        }
        catch (Exception e)
        {
            // InsufficientExecutionStackException, OutOfMemoryException from hostile input, or a verifier bug.
            return RewardResult.Wrong($"verifier error: {e.GetType().Name}: {Short(e.Message)}");
        }
    }

    private static string Short(string s)
    {
        s = s.Replace('\n', ' ').Replace('\r', ' ');
        return s.Length <= ReasonChars ? s : s[..(ReasonChars - 3)] + "...";
    }
}

using OR1.Grpo.Data;

namespace OR1.Grpo.Rewards;

/// <summary>Response-level reward rules shared by every verifier (docs/RECIPE.md "Rewards").</summary>
/// <param name="ZeroForTruncated">A response cut off by the length limit (no EOS) scores 0 (on by default).</param>
/// <param name="TimeLimit">Wall-clock limit for verifying one response, for verifiers that set none of their own (see <see cref="IRewardFunction.TimeLimit"/>).</param>
public sealed record RewardOptions(bool ZeroForTruncated = true, TimeSpan? TimeLimit = null)
{
    /// <summary>The limit in force (1 s unless set).</summary>
    public TimeSpan EffectiveTimeLimit => TimeLimit ?? TimeSpan.FromSeconds(1);
}

/// <summary>
/// Scores a response: takes the text after the first &lt;/think&gt; (the whole text when there is none),
/// zeroes truncated responses, and dispatches on the ground truth to the verifier that handles it (math
/// here; the code sandbox registers itself the same way). Never throws for model output.
/// </summary>
public sealed class RewardRouter(IEnumerable<IRewardFunction> verifiers, RewardOptions? options = null)
{
    private readonly IRewardFunction[] _verifiers = verifiers.ToArray();

    public RewardOptions Options { get; } = options ?? new RewardOptions();

    /// <summary>The part of a response that is graded: everything after the first &lt;/think&gt;.</summary>
    public static string AnswerPart(string response)
    {
        int end = response.IndexOf("</think>", StringComparison.Ordinal);
        return end < 0 ? response : response[(end + "</think>".Length)..];
    }

    /// <summary>Whether some verifier handles <paramref name="truth"/> (checked when data is loaded).</summary>
    public bool CanScore(GroundTruth truth) => _verifiers.Any(v => v.CanScore(truth));

    /// <summary>The reward of one response.</summary>
    public RewardResult Score(string response, GroundTruth truth, bool truncated, CancellationToken cancellation = default)
    {
        if (truncated && Options.ZeroForTruncated) return RewardResult.Wrong("truncated: no EOS before the length limit");
        var verifier = _verifiers.FirstOrDefault(v => v.CanScore(truth));
        if (verifier is null) return RewardResult.Wrong($"no verifier registered for {truth}");
        var budget = verifier.TimeLimit(truth) ?? Options.EffectiveTimeLimit;
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        limit.CancelAfter(budget);
        try
        {
            return verifier.Score(AnswerPart(response), truth, limit.Token);
        }
        catch (OperationCanceledException)
        {
            return RewardResult.Wrong($"time limit of {budget.TotalSeconds:0.###} s exceeded");
        }
        catch (Exception e)
        {
            // A verifier bug must not stop training; it is visible in the reason.
            return RewardResult.Wrong($"verifier error: {e.GetType().Name}: {e.Message}");
        }
    }
}

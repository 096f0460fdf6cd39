using OR1.Grpo.Data;

namespace OR1.Grpo.Rewards;

/// <summary>
/// A rule-based verifier for one kind of ground truth. Implementations never throw for bad model output:
/// anything unparseable, too slow or hostile scores 0 with a reason. The text given is the answer part of
/// the response (after the first &lt;/think&gt;), see <see cref="RewardRouter"/>.
/// </summary>
public interface IRewardFunction
{
    /// <summary>Whether this verifier handles <paramref name="truth"/>.</summary>
    bool CanScore(GroundTruth truth);

    /// <summary>Scores an answer; must respect <paramref name="cancellation"/> and its own time limits.</summary>
    RewardResult Score(string answer, GroundTruth truth, CancellationToken cancellation);

    /// <summary>
    /// The wall-clock budget the <see cref="RewardRouter"/> gives this verifier for one response: null (the
    /// default) for <see cref="RewardOptions.EffectiveTimeLimit"/>; <see cref="Timeout.InfiniteTimeSpan"/> for a
    /// verifier that bounds its own work (the code sandbox limits each program and may queue for a slot).
    /// </summary>
    TimeSpan? TimeLimit(GroundTruth truth) => null;
}

using OR1.Grpo.Rewards.Code;
using OR1.Grpo.Rewards.Math;

namespace OR1.Grpo.Rewards;

/// <summary>
/// The verifiers this build has, in dispatch order: math always; code when the sandbox runs on this machine
/// (bubblewrap and python3 installed, and a test program runs in it), else none: the fallback to math only
/// is explicit, and <see cref="CodeUnavailableReason"/> says why and what to install. Code never runs
/// unsandboxed unless <c>unsafeNoSandbox</c> is passed (each program run then logs a warning).
/// </summary>
public static class Verifiers
{
    /// <summary>Math, plus code when <see cref="CodeUnavailableReason"/> is null, with their default settings.</summary>
    /// <param name="unsafeNoSandbox">Run code without bubblewrap (only rlimits and a scratch folder). Dangerous.</param>
    public static IReadOnlyList<IRewardFunction> Default(bool unsafeNoSandbox = false)
    {
        var math = new MathReward();
        if (CodeUnavailableReason(unsafeNoSandbox) is not null) return [math];
        var options = CodeRewardOptions.Default with { Sandbox = SandboxOptions.Default with { UnsafeNoSandbox = unsafeNoSandbox } };
        return [math, new CodeReward(options)];
    }

    /// <summary>
    /// Null when <see cref="Default"/> includes code rewards, else why not, with what to install
    /// ("bubblewrap (bwrap) is not installed: apt-get install bubblewrap"). The check runs a test program once
    /// per process.
    /// </summary>
    public static string? CodeUnavailableReason(bool unsafeNoSandbox = false) =>
        SandboxRunner.Availability(SandboxOptions.Default with { UnsafeNoSandbox = unsafeNoSandbox });
}

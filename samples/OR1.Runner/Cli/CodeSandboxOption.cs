using System.CommandLine;
using OR1.Grpo.Rewards;

namespace OR1.Runner.Cli;

/// <summary>
/// <c>--unsafe-no-sandbox</c>, shared by the commands that build verifiers, and the verifier list with its
/// warnings: code rewards unavailable (and what to install), or code running without a sandbox.
/// </summary>
public static class CodeSandboxOption
{
    /// <summary>The option (off by default).</summary>
    public static Option<bool> Create() => new("--unsafe-no-sandbox")
    {
        Description = "Run model-written code WITHOUT the bubblewrap sandbox (only rlimits and a scratch folder). Dangerous: for machines that cannot run bubblewrap",
    };

    /// <summary><see cref="OR1.Grpo.Rewards.Verifiers.Default"/>, telling standard error when code is unavailable or unsandboxed.</summary>
    public static IReadOnlyList<IRewardFunction> Verifiers(bool unsafeNoSandbox, TextWriter? log = null)
    {
        log ??= Console.Error;
        string? unavailable = OR1.Grpo.Rewards.Verifiers.CodeUnavailableReason(unsafeNoSandbox);
        if (unavailable is not null)
            log.WriteLine($"warning: code rewards are unavailable, only math is scored (code rows score 0): {unavailable}");
        else if (unsafeNoSandbox)
            log.WriteLine("warning: --unsafe-no-sandbox: model-written code runs WITHOUT a sandbox; it can read and change your files and use the network");
        return OR1.Grpo.Rewards.Verifiers.Default(unsafeNoSandbox);
    }
}

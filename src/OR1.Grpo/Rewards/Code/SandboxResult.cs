namespace OR1.Grpo.Rewards.Code;

/// <summary>How a sandboxed program ended.</summary>
public enum SandboxStatus
{
    /// <summary>It exited by itself (any exit code, a signal included: see <see cref="SandboxResult.ExitCode"/>).</summary>
    Exited,

    /// <summary>It ran past its wall-clock limit and was killed.</summary>
    TimeLimit,

    /// <summary>It wrote more than the output cap to stdout or stderr and was killed.</summary>
    OutputLimit,

    /// <summary>The sandbox itself failed (bubblewrap could not start or set up); the program did not run.</summary>
    SandboxError,

    /// <summary>The caller cancelled; the program was killed.</summary>
    Cancelled,
}

/// <summary>What one program did: status, exit code, captured (capped) output, wall time.</summary>
/// <param name="Status">How it ended.</param>
/// <param name="ExitCode">Exit code; 128 + N when killed by signal N (as bubblewrap and shells report it).</param>
/// <param name="Stdout">Standard output, UTF-8, at most the cap.</param>
/// <param name="Stderr">Standard error, UTF-8, at most the cap.</param>
/// <param name="Elapsed">Wall time from start to exit.</param>
/// <param name="Detail">For <see cref="SandboxStatus.SandboxError"/> and the limits: what happened, in words.</param>
public sealed record SandboxResult(SandboxStatus Status, int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed, string Detail = "")
{
    /// <summary>The terminating signal when <see cref="ExitCode"/> says one, else null.</summary>
    public int? Signal => Status == SandboxStatus.Exited && ExitCode is > 128 and < 128 + 65 ? ExitCode - 128 : null;

    /// <summary>Exited with code 0.</summary>
    public bool Succeeded => Status == SandboxStatus.Exited && ExitCode == 0;
}

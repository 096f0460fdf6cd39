namespace OR1.Grpo.Rewards.Code;

/// <summary>Settings of <see cref="CodeReward"/>: the sandbox, the worker pool, the input cap.</summary>
public sealed record CodeRewardOptions
{
    /// <summary>The defaults.</summary>
    public static CodeRewardOptions Default { get; } = new();

    /// <summary>How each program runs (limits, tools, <see cref="SandboxOptions.UnsafeNoSandbox"/>).</summary>
    public SandboxOptions Sandbox { get; init; } = SandboxOptions.Default;

    /// <summary>At most this many programs run at once, over every caller of one <see cref="CodeReward"/>. Default: the core count.</summary>
    public int MaxConcurrentPrograms { get; init; } = System.Environment.ProcessorCount;

    /// <summary>A python block longer than this many characters is not run (reward 0). Default 100,000.</summary>
    public int MaxCodeChars { get; init; } = 100_000;
}

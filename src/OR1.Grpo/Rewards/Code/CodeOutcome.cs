namespace OR1.Grpo.Rewards.Code;

/// <summary>What happened to a response's code; every outcome but <see cref="Passed"/> scores 0.</summary>
public enum CodeOutcome
{
    /// <summary>Every test passed.</summary>
    Passed,

    /// <summary>No fenced python block after &lt;/think&gt; (or one over the size limit).</summary>
    NoCode,

    /// <summary>A test's output or assertion did not hold; the reason has the first differing line.</summary>
    WrongAnswer,

    /// <summary>A program ran past its wall-clock or CPU limit.</summary>
    TimeLimit,

    /// <summary>A program ran out of address space (MemoryError or an allocation failure).</summary>
    MemoryLimit,

    /// <summary>A program wrote more than the output cap.</summary>
    OutputLimit,

    /// <summary>A program failed: non-zero exit, a signal, an exception (the reason has the last lines of stderr), or it exited before the tests finished.</summary>
    RuntimeError,

    /// <summary>The sandbox itself failed; says nothing about the code.</summary>
    SandboxError,

    /// <summary>The ground truth holds no runnable test.</summary>
    InvalidTests,

    /// <summary>The caller cancelled.</summary>
    Cancelled,
}

/// <summary>The verdict on one response: outcome, reason, and how many tests ran.</summary>
/// <param name="Outcome">What happened.</param>
/// <param name="Reason">In words; starts with the outcome ("passed", "wrong answer on test 2/5: line 1: ...").</param>
/// <param name="TestsPassed">Tests that passed before the first failure (all of them when passed).</param>
/// <param name="TestCount">Tests in the ground truth.</param>
public sealed record CodeVerdict(CodeOutcome Outcome, string Reason, int TestsPassed = 0, int TestCount = 0)
{
    /// <summary>Whether every test passed.</summary>
    public bool Passed => Outcome == CodeOutcome.Passed;

    /// <summary>1 when passed, else 0, with the reason.</summary>
    public RewardResult ToReward() => Passed ? RewardResult.Correct(Reason) : RewardResult.Wrong(Reason);
}

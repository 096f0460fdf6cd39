using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace OR1.Grpo.Rewards.Math;

/// <summary>
/// A wall-clock budget plus a cancellation token, checked inside every loop of the math verifier
/// (there is no way to abort a running thread in .NET, so the code polls). <see cref="Check"/> throws
/// <see cref="MathTimeoutException"/> once the budget is spent or the token is cancelled.
/// </summary>
internal sealed class Deadline
{
    private readonly long _endTimestamp;
    private readonly CancellationToken _cancellation;
    private int _counter;

    public Deadline(TimeSpan limit, CancellationToken cancellation)
    {
        Limit = limit;
        _cancellation = cancellation;
        long start = Stopwatch.GetTimestamp();
        double ticks = System.Math.Max(0, limit.TotalSeconds) * Stopwatch.Frequency;
        _endTimestamp = ticks >= long.MaxValue - start ? long.MaxValue : start + (long)ticks;
    }

    /// <summary>A deadline that never expires (for the public helpers called without a limit).</summary>
    public static Deadline None => new(TimeSpan.MaxValue, CancellationToken.None);

    public TimeSpan Limit { get; }

    /// <summary>Whether the token (rather than the clock) stopped the work.</summary>
    public bool Cancelled => _cancellation.IsCancellationRequested;

    /// <summary>Throws when the budget is spent. Cheap: reads the clock on every 64th call only.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Check()
    {
        if ((++_counter & 63) == 0) CheckNow();
    }

    /// <summary>Throws when the budget is spent, reading the clock now.</summary>
    public void CheckNow()
    {
        if (_cancellation.IsCancellationRequested || Stopwatch.GetTimestamp() > _endTimestamp)
            throw new MathTimeoutException();
        // Deeply recursive input is refused long before this, but never let the stack overflow.
        if (!RuntimeHelpers.TryEnsureSufficientExecutionStack()) throw new MathParseException("expression nested too deeply");
    }
}

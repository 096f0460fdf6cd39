namespace OR1.Native;

/// <summary>The outcome of <see cref="BackendCheck.Run"/> on one backend.</summary>
/// <param name="Reference">What the results were compared with: "cpu backend", or "double precision on the host" for the Cpu backend itself.</param>
/// <param name="Ops">Each op's comparison, in the order they ran; those before a failure when <paramref name="Error"/> is set.</param>
/// <param name="Error">The exception an op threw (type and message), or null when every op ran.</param>
public sealed record BackendCheckResult(string Reference, IReadOnlyList<OpComparison> Ops, string? Error = null)
{
    /// <summary>Every op ran and is within its tolerance.</summary>
    public bool Passed => Error is null && Ops.Count > 0 && Ops.All(o => o.Passed);

    /// <summary>The largest difference of any op (NaN when one is NaN); null when no op ran.</summary>
    public double? MaxDifference => Ops.Count == 0 ? null : Ops.Select(o => o.MaxDifference).Aggregate(Math.Max);
}

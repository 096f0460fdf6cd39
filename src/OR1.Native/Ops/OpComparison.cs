namespace OR1.Native;

/// <summary>One op of a <see cref="BackendCheck"/>: the largest absolute difference from the reference and the tolerance.</summary>
/// <param name="Op">The op's name in the op contract (MatMul, RmsNormForward, GrpoAdvantages).</param>
/// <param name="MaxDifference">max |backend - reference| over the op's outputs; NaN when the backend produced a NaN.</param>
/// <param name="Tolerance">The largest difference that passes.</param>
public sealed record OpComparison(string Op, double MaxDifference, double Tolerance)
{
    /// <summary>Within the tolerance (a NaN difference never is).</summary>
    public bool Passed => MaxDifference <= Tolerance;
}

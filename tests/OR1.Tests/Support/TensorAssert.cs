using System.Globalization;
using System.Numerics;
using System.Text;
using NUnit.Framework;

namespace OR1.Tests.Support;

/// <summary>
/// Elementwise comparison of whole tensors with a failure message meant for a CI log: where it went wrong,
/// how badly, and whether NaN/Inf are involved, not just the first differing element.
/// </summary>
/// <remarks>
/// An element passes when |actual - expected| &lt;= absTol + relTol * |expected|. Non-finite expected values
/// must be matched exactly (NaN by NaN, +Inf by +Inf); a non-finite actual where a finite value was expected fails.
/// </remarks>
public static class TensorAssert
{
    private const int ListedFailures = 8;

    /// <summary>Compares a float result with a double reference.</summary>
    public static void Close(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, double absTol, double relTol, string what,
        int[]? shape = null)
        => CloseCore(actual, expected, absTol, relTol, what, shape);

    /// <summary>Compares two float tensors (a backend against another backend, for example).</summary>
    public static void Close(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double absTol, double relTol, string what,
        int[]? shape = null)
        => CloseCore(actual, expected, absTol, relTol, what, shape);

    /// <summary>Compares two double tensors (a reference backward against finite differences, for example).</summary>
    public static void Close(ReadOnlySpan<double> actual, ReadOnlySpan<double> expected, double absTol, double relTol, string what,
        int[]? shape = null)
        => CloseCore(actual, expected, absTol, relTol, what, shape);

    /// <summary>Compares one scalar with the same rule and message style.</summary>
    public static void Close(double actual, double expected, double absTol, double relTol, string what)
        => CloseCore<double, double>([actual], [expected], absTol, relTol, what, null);

    /// <summary>Integer tensors (token ids, indices) must match exactly.</summary>
    public static void Equal(ReadOnlySpan<int> actual, ReadOnlySpan<int> expected, string what, int[]? shape = null)
    {
        if (actual.Length != expected.Length)
        {
            Assert.Fail($"{what}: length mismatch: actual has {actual.Length} elements, expected {expected.Length}");
            return;
        }
        CheckShape(shape, actual.Length, what);
        int mismatches = 0;
        var listed = new StringBuilder();
        for (int i = 0; i < actual.Length; i++)
        {
            if (actual[i] == expected[i]) continue;
            if (mismatches < ListedFailures) listed.Append(CultureInfo.InvariantCulture, $"\n    {Index(i, shape)}: actual {actual[i]}, expected {expected[i]}");
            mismatches++;
        }
        if (mismatches == 0) return;
        Assert.Fail($"{what}: {mismatches} of {actual.Length} elements differ{ShapeText(shape)} (exact match required)\n  first mismatches:{listed}");
    }

    private static void CloseCore<TA, TE>(ReadOnlySpan<TA> actual, ReadOnlySpan<TE> expected, double absTol, double relTol, string what,
        int[]? shape)
        where TA : INumberBase<TA>
        where TE : INumberBase<TE>
    {
        ArgumentOutOfRangeException.ThrowIfNegative(absTol);
        ArgumentOutOfRangeException.ThrowIfNegative(relTol);
        if (actual.Length != expected.Length)
        {
            Assert.Fail($"{what}: length mismatch: actual has {actual.Length} elements, expected {expected.Length}");
            return;
        }
        CheckShape(shape, actual.Length, what);

        int toleranceFailures = 0;
        int worst = -1;
        double worstRatio = 0;
        int maxAbsAt = -1, maxRelAt = -1;
        double maxAbs = 0, maxRel = 0;
        int gotNonFinite = 0, firstGotNonFinite = -1;
        int wantedNonFinite = 0, firstWantedNonFinite = -1;
        var listed = new StringBuilder();
        int listedCount = 0;

        for (int i = 0; i < actual.Length; i++)
        {
            double a = double.CreateTruncating(actual[i]);
            double e = double.CreateTruncating(expected[i]);
            bool failed;
            if (!double.IsFinite(e))
            {
                failed = !(double.IsNaN(e) ? double.IsNaN(a) : a == e);
                if (failed && wantedNonFinite++ == 0) firstWantedNonFinite = i;
            }
            else if (!double.IsFinite(a))
            {
                failed = true;
                if (gotNonFinite++ == 0) firstGotNonFinite = i;
            }
            else
            {
                double diff = Math.Abs(a - e);
                double allowed = absTol + relTol * Math.Abs(e);
                if (diff > maxAbs || maxAbsAt < 0) (maxAbs, maxAbsAt) = (diff, i);
                if (e != 0 && (diff / Math.Abs(e) > maxRel || maxRelAt < 0)) (maxRel, maxRelAt) = (diff / Math.Abs(e), i);
                failed = diff > allowed;
                if (failed)
                {
                    toleranceFailures++;
                    // With zero tolerance every failure is infinitely far out; the largest difference is then the worst.
                    double ratio = allowed > 0 ? diff / allowed : double.PositiveInfinity;
                    if (worst < 0 || ratio > worstRatio || (double.IsPositiveInfinity(ratio) && diff > Math.Abs(Get(actual, worst) - Get(expected, worst))))
                        (worst, worstRatio) = (i, ratio);
                }
            }
            if (failed && listedCount++ < ListedFailures)
                listed.Append(CultureInfo.InvariantCulture, $"\n    {Index(i, shape)}: actual {F(a)}, expected {F(e)}, |diff| {F(Math.Abs(a - e))}");
        }

        int failures = toleranceFailures + gotNonFinite + wantedNonFinite;
        if (failures == 0) return;

        var message = new StringBuilder();
        message.Append(CultureInfo.InvariantCulture,
            $"{what}: {failures} of {actual.Length} elements fail |actual - expected| <= {F(absTol)} + {F(relTol)} * |expected|{ShapeText(shape)}");
        if (worst >= 0)
        {
            double a = Get(actual, worst), e = Get(expected, worst);
            message.Append(CultureInfo.InvariantCulture,
                $"\n  worst element {Index(worst, shape)}: actual {F(a)}, expected {F(e)}, |diff| {F(Math.Abs(a - e))} = {F(worstRatio)} x the allowed {F(absTol + relTol * Math.Abs(e))}");
        }
        if (maxAbsAt >= 0)
        {
            message.Append(CultureInfo.InvariantCulture, $"\n  max abs error {F(maxAbs)} at {Index(maxAbsAt, shape)}");
            message.Append(maxRelAt >= 0
                ? string.Create(CultureInfo.InvariantCulture, $"; max rel error {F(maxRel)} at {Index(maxRelAt, shape)}")
                : "; max rel error n/a (every expected value is 0)");
            message.Append(CultureInfo.InvariantCulture, $" (over the {Count(actual.Length - gotNonFinite - CountNonFiniteExpected(expected), "finite pair")}, {toleranceFailures} of them out of tolerance)");
        }
        if (gotNonFinite > 0)
        {
            message.Append(CultureInfo.InvariantCulture,
                $"\n  NaN/Inf: {Count(gotNonFinite, "element")} expected finite but got NaN/Inf; first at {Index(firstGotNonFinite, shape)} (actual {F(Get(actual, firstGotNonFinite))}, expected {F(Get(expected, firstGotNonFinite))})");
        }
        if (wantedNonFinite > 0)
        {
            message.Append(CultureInfo.InvariantCulture,
                $"\n  NaN/Inf: {Count(wantedNonFinite, "element")} expected NaN/Inf but got something else; first at {Index(firstWantedNonFinite, shape)} (actual {F(Get(actual, firstWantedNonFinite))}, expected {F(Get(expected, firstWantedNonFinite))})");
        }
        message.Append(CultureInfo.InvariantCulture, $"\n  first {Count(Math.Min(failures, ListedFailures), "failing element")}:{listed}");
        Assert.Fail(message.ToString());
    }

    private static double Get<T>(ReadOnlySpan<T> values, int i) where T : INumberBase<T> => double.CreateTruncating(values[i]);

    private static int CountNonFiniteExpected<T>(ReadOnlySpan<T> expected) where T : INumberBase<T>
    {
        int count = 0;
        foreach (T e in expected)
        {
            if (!T.IsFinite(e)) count++;
        }
        return count;
    }

    private static void CheckShape(int[]? shape, int length, string what)
    {
        if (shape == null) return;
        long product = 1;
        foreach (int d in shape) product *= d;
        if (product != length)
            throw new ArgumentException($"{what}: shape [{string.Join(", ", shape)}] has {product} elements, the data {length}", nameof(shape));
    }

    private static string ShapeText(int[]? shape) => shape == null ? "" : $" (shape [{string.Join(", ", shape)}])";

    /// <summary>"[flat]" or, with a shape, "[flat] = [i, j, ...]".</summary>
    private static string Index(int flat, int[]? shape)
    {
        if (shape == null || shape.Length < 2) return $"[{flat}]";
        var index = new int[shape.Length];
        int rest = flat;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            index[d] = rest % shape[d];
            rest /= shape[d];
        }
        return $"[{flat}] = [{string.Join(", ", index)}]";
    }

    private static string Count(int n, string noun) => n == 1 ? $"1 {noun}" : $"{n} {noun}s";

    private static string F(double value) => value.ToString("G9", CultureInfo.InvariantCulture);
}

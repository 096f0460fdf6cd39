using System.Globalization;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.Bf16Storage;

/// <summary>
/// <see cref="TensorAssert.Close(ReadOnlySpan{float}, ReadOnlySpan{double}, double, double, string, int[])"/> that also
/// writes, when it passes, how much of the tolerance the worst element used (to the test's output), so that the bf16
/// tolerances can be judged from a run's log rather than guessed.
/// </summary>
internal static class Bf16Check
{
    public static void Close(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, double absTol, double relTol, string what, int[]? shape = null)
    {
        TensorAssert.Close(actual, expected, absTol, relTol, what, shape);
        Report(actual, expected, absTol, relTol, what);
    }

    /// <summary>
    /// |actual - expected| &lt;= bound[i] element by element, for error models whose bound differs per element (a sum of
    /// rounded terms is off by at most the rounding unit times the sum of the terms' magnitudes). Fails on the worst
    /// element with its index, values and bound; writes the share of the bound the worst element used.
    /// </summary>
    public static void Within(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, ReadOnlySpan<double> bound, string what, int[]? shape = null)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), $"{what}: length");
        int worst = -1;
        double worstRatio = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double diff = Math.Abs(actual[i] - expected[i]);
            double ratio = double.IsNaN(diff) ? double.PositiveInfinity : bound[i] > 0 ? diff / bound[i] : diff > 0 ? double.PositiveInfinity : 0;
            if (ratio > worstRatio || worst < 0)
            {
                worstRatio = ratio;
                worst = i;
            }
        }
        if (worst < 0) return;
        string at = shape is null ? worst.ToString(CultureInfo.InvariantCulture) : string.Join(", ", Unravel(worst, shape));
        string text = string.Create(CultureInfo.InvariantCulture,
            $"{what}: worst element [{at}]: actual {actual[worst]:G6}, expected {expected[worst]:G6}, |diff| {Math.Abs(actual[worst] - expected[worst]):G3} = {worstRatio:P0} of its bound {bound[worst]:G3}");
        TestContext.Out.WriteLine(text);
        Assert.That(worstRatio, Is.LessThanOrEqualTo(1.0), text);
    }

    private static int[] Unravel(int index, int[] shape)
    {
        var result = new int[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            result[d] = index % shape[d];
            index /= shape[d];
        }
        return result;
    }

    private static void Report(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, double absTol, double relTol, string what)
    {
        double maxAbs = 0, used = 0, maxExpected = 0, neededAtol = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double diff = Math.Abs(actual[i] - expected[i]);
            maxAbs = Math.Max(maxAbs, diff);
            maxExpected = Math.Max(maxExpected, Math.Abs(expected[i]));
            double allowed = absTol + relTol * Math.Abs(expected[i]);
            neededAtol = Math.Max(neededAtol, diff - relTol * Math.Abs(expected[i]));
            used = Math.Max(used, allowed > 0 ? diff / allowed : diff > 0 ? double.PositiveInfinity : 0);
        }
        TestContext.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{what}: max |diff| {maxAbs:G3} (max |expected| {maxExpected:G3}); worst element used {used:P0} of atol {absTol:G3} + rtol {relTol:G3} * |expected| (at this rtol the data need atol {neededAtol:G3})"));
    }
}

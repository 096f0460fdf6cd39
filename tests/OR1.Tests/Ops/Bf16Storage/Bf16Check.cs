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

using NUnit.Framework;
using NUnit.Framework.Internal;

namespace OR1.Tests.Support;

/// <summary>
/// TensorAssert decides what every backend test reports, so its pass/fail rule and message are tested too.
/// Failures are provoked inside an isolated NUnit context so that they do not fail these tests themselves.
/// </summary>
[TestFixture]
public sealed class TensorAssertTests
{
    private static string? FailureOf(Action assertion)
    {
        using var isolated = new TestExecutionContext.IsolatedContext();
        try
        {
            assertion();
        }
        catch (AssertionException e)
        {
            return e.Message;
        }
        return null;
    }

    [Test]
    public void PassesWithinAbsolutePlusRelativeTolerance()
    {
        float[] actual = [1.0f, 100.5f, 0.0005f];
        double[] expected = [1.0, 100.0, 0.0];
        Assert.That(FailureOf(() => TensorAssert.Close(actual, expected, 1e-3, 1e-2, "ok")), Is.Null);
        Assert.That(FailureOf(() => TensorAssert.Close([double.NaN, double.PositiveInfinity], [double.NaN, double.PositiveInfinity], 0, 0, "matching non-finite")), Is.Null);
    }

    [Test]
    public void ReportsTheWorstElementWithItsIndexAndTheErrorSummary()
    {
        double[] expected = [0, 1, 2, 3, 4, 5];
        float[] actual = [0, 1.1f, 2, 3, 4.5f, 5];
        string? message = FailureOf(() => TensorAssert.Close(actual, expected, 0.01, 0, "demo", [2, 3]));
        Assert.That(message, Is.Not.Null);
        Assert.That(message, Does.Contain("demo: 2 of 6 elements"));
        Assert.That(message, Does.Contain("worst element [4] = [1, 1]"));
        Assert.That(message, Does.Contain("max abs error 0.5 at [4] = [1, 1]"));
        Assert.That(message, Does.Contain("[1] = [0, 1]"), "the other failure is listed too");
    }

    [Test]
    public void ReportsNonFiniteMismatchesSeparately()
    {
        double[] expected = [1, double.NaN, 3, 4];
        float[] actual = [float.NaN, 2, float.PositiveInfinity, 4];
        string? message = FailureOf(() => TensorAssert.Close(actual, expected, 1, 1, "nonfinite"));
        Assert.That(message, Does.Contain("3 of 4 elements"));
        Assert.That(message, Does.Contain("2 elements expected finite but got NaN/Inf; first at [0]"));
        Assert.That(message, Does.Contain("1 element expected NaN/Inf but got something else; first at [1]"));
    }

    [Test]
    public void ReportsLengthMismatchesAndIntegerDifferences()
    {
        Assert.That(FailureOf(() => TensorAssert.Close([1f, 2f], [1f], 0, 0, "short")), Does.Contain("length mismatch"));
        Assert.That(FailureOf(() => TensorAssert.Equal([1, 2, 3], [1, 2, 3], "ids")), Is.Null);
        Assert.That(FailureOf(() => TensorAssert.Equal([1, 9, 3], [1, 2, 3], "ids")), Does.Contain("[1]: actual 9, expected 2"));
    }
}

namespace OR1.Tests.Support;

/// <summary>The chi-square p-values the sampler tests rely on, against tabulated values.</summary>
[TestFixture]
public sealed class ChiSquareTests
{
    // Upper-tail critical values (statistic, degrees of freedom, p) from standard tables.
    [TestCase(3.841459, 1, 0.05)]
    [TestCase(6.634897, 1, 0.01)]
    [TestCase(23.209251, 10, 0.01)]
    [TestCase(11.070498, 5, 0.05)]
    [TestCase(35.258536, 7, 1e-5)]
    [TestCase(0.0, 3, 1.0)]
    public void PValuesMatchTheTables(double statistic, int df, double p) =>
        Assert.That(ChiSquare.PValue(statistic, df), Is.EqualTo(p).Within(p * 2e-4 + 1e-12));

    [Test]
    public void LogGammaOfIntegersIsLogFactorial()
    {
        Assert.That(ChiSquare.LogGamma(5), Is.EqualTo(Math.Log(24)).Within(1e-12));
        Assert.That(ChiSquare.LogGamma(0.5), Is.EqualTo(0.5 * Math.Log(Math.PI)).Within(1e-12));
    }

    [Test]
    public void StatisticSkipsZeroProbabilityCategories()
    {
        var (statistic, df) = ChiSquare.Statistic([10, 30, 0], [0.25, 0.75, 0]);
        Assert.That(statistic, Is.Zero);
        Assert.That(df, Is.EqualTo(1));
    }
}

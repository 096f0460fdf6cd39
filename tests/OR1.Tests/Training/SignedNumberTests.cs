using OR1.Grpo.Training;

namespace OR1.Tests.Training;

public sealed class SignedNumberTests
{
    [TestCase(0.0, 4, "+0.0000")]
    [TestCase(-0.0, 4, "+0.0000")]
    [TestCase(-0.00001, 4, "+0.0000")]
    [TestCase(0.00004, 4, "+0.0000")]
    [TestCase(-0.00005001, 4, "-0.0001")]
    [TestCase(1.23456, 4, "+1.2346")]
    [TestCase(-1.23456, 2, "-1.23")]
    [TestCase(-12345.5, 1, "-12345.5")]
    [TestCase(double.NaN, 4, "NaN")]
    [TestCase(double.NegativeInfinity, 4, "-Infinity")]
    public void FormatsWithOneSignAndNoNegativeZero(double value, int decimals, string expected)
    {
        Assert.That(SignedNumber.Format(value, decimals), Is.EqualTo(expected));
    }
}

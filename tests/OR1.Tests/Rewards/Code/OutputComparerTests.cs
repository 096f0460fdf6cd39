using OR1.Grpo.Rewards.Code;

namespace OR1.Tests.Rewards.Code;

[TestFixture]
public sealed class OutputComparerTests
{
    [TestCase("3\n", "3")]
    [TestCase("  3  \r\n\r\n", "3\n")]
    [TestCase("1 2 3\n4 5\n", "1 2 3\r\n4 5")]
    [TestCase("1   2\t3", "1 2 3")]
    [TestCase("0.50", "0.5")]
    [TestCase("1.0", "1")]
    [TestCase("-0", "0")]
    [TestCase("1e3", "1000")]
    [TestCase("15e-1 x", "1.5 x")]
    [TestCase("+7", "7")]
    [TestCase("123456789012345678901234567890.10", "123456789012345678901234567890.1")]
    [TestCase("YES\n\n", "YES")]
    public void Matches(string actual, string expected) =>
        Assert.That(OutputComparer.Matches(actual, expected, out string difference), Is.True, difference);

    [TestCase("4", "3", "line 1: expected '3', got '4'")]
    [TestCase("1\n2", "1\n3", "line 2: expected '3', got '2'")]
    [TestCase("1", "1\n2", "line 2: expected '2', got the end of the output")]
    [TestCase("1\n2", "1", "line 2: expected the end of the output, got '2'")]
    [TestCase("0.333", "0.3333", "line 1")]
    [TestCase("yes", "YES", "line 1")]
    [TestCase("1 2", "1 2 3", "line 1")]
    [TestCase("1\n\n2", "1\n2", "line 2")]
    [TestCase("nan", "NaN", "line 1")]
    public void Differs(string actual, string expected, string reason)
    {
        Assert.That(OutputComparer.Matches(actual, expected, out string difference), Is.False);
        Assert.That(difference, Does.StartWith(reason));
    }

    [Test]
    public void HugeExponentsAreTextNotNumbers() =>
        Assert.That(OutputComparer.DecimalsEqual("1e9999999999", "1e9999999999"), Is.False);
}

using OR1.Grpo.Rewards.Code;

namespace OR1.Tests.Rewards.Code;

[TestFixture]
public sealed class CodeExtractorTests
{
    [Test]
    public void TakesTheLastPythonBlock()
    {
        string text = "first\n```python\nprint(1)\n```\nthen\n```python\nprint(2)\n```\nend";
        Assert.That(CodeExtractor.ExtractPython(text), Is.EqualTo("print(2)\n"));
    }

    [Test]
    public void SkipsBlocksInOtherLanguagesWhole()
    {
        // The ``` inside the bash block's body must not be taken as the opening of a python block.
        string text = "```python\nprint('kept')\n```\n```bash\necho hi\n```\n";
        Assert.That(CodeExtractor.ExtractPython(text), Is.EqualTo("print('kept')\n"));
    }

    [TestCase("```Python\nx = 1\n```", "x = 1\n")]
    [TestCase("```python3\nx = 1\n```", "x = 1\n")]
    [TestCase("```py\nx = 1\n```", "x = 1\n")]
    [TestCase("```python  title\nx = 1\n```", "x = 1\n")]
    public void AcceptsPythonInfoStrings(string text, string expected) =>
        Assert.That(CodeExtractor.ExtractPython(text), Is.EqualTo(expected));

    [TestCase("no code at all")]
    [TestCase("```\nprint(1)\n```")]
    [TestCase("```cpp\nint main() {}\n```")]
    [TestCase("```python\nprint(1)\n")]
    [TestCase("")]
    public void NoPythonBlockGivesNull(string text) => Assert.That(CodeExtractor.ExtractPython(text), Is.Null);

    [Test]
    public void AnUnclosedLastBlockDoesNotReplaceAClosedOne()
    {
        string text = "```python\nprint(1)\n```\nand a truncated\n```python\nprint(2";
        Assert.That(CodeExtractor.ExtractPython(text), Is.EqualTo("print(1)\n"));
    }

    [Test]
    public void LongHostileTextIsScannedInLinearTime()
    {
        string text = string.Concat(Enumerable.Repeat("```python\n", 200_000));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.That(CodeExtractor.ExtractPython(text), Is.Not.Null);
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(2)));
    }
}

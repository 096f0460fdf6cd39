using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using OR1.Grpo.Data;
using OR1.Grpo.Rewards;
using OR1.Grpo.Rewards.Math;

namespace OR1.Tests.Rewards;

[TestFixture]
public sealed class MathRewardTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(1);

    /// <summary>Slack over the limit for a loaded test machine (the verifier itself stops at the limit).</summary>
    private static readonly TimeSpan Margin = TimeSpan.FromMilliseconds(500);

    private readonly MathReward _reward = new(new MathRewardOptions { TimeLimit = Limit });

    public static IEnumerable<TestCaseData> OrdinaryCases() => Named(MathRewardCases.Ordinary());

    public static IEnumerable<TestCaseData> AdversarialCases() => Named(MathRewardCases.Adversarial());

    private static IEnumerable<TestCaseData> Named(IEnumerable<MathRewardCases.Case> cases) =>
        cases.Select((c, i) => new TestCaseData(c).SetName(
            $"{i:000} {c.Category}: {Show(c.Response)} vs [{string.Join(" | ", c.Answers.Select(Show))}] -> {c.Expected}"));

    private static string Show(string s)
    {
        // Test names must survive test filters and XML reports: no control, surrogate or unassigned characters.
        var chars = s.Select(ch => char.GetUnicodeCategory(ch) is UnicodeCategory.Control or UnicodeCategory.Surrogate
            or UnicodeCategory.OtherNotAssigned or UnicodeCategory.Format or UnicodeCategory.PrivateUse ? '?' : ch).ToArray();
        string t = new(chars);
        return t.Length <= 48 ? t : $"{t[..24]}...{t[^12..]} ({t.Length} chars)";
    }

    [OneTimeSetUp]
    public void WarmUp() => _reward.Score(@"\boxed{\frac{1}{2}}", new MathGroundTruth(["0.5"]), CancellationToken.None);

    private RewardResult ScoreTimed(MathRewardCases.Case c, out TimeSpan elapsed)
    {
        var watch = Stopwatch.StartNew();
        var result = _reward.Score(c.Response, new MathGroundTruth(c.Answers), CancellationToken.None);
        elapsed = watch.Elapsed;
        return result;
    }

    [TestCaseSource(nameof(OrdinaryCases))]
    public void Table(MathRewardCases.Case c)
    {
        var result = ScoreTimed(c, out var elapsed);
        Assert.Multiple(() =>
        {
            Assert.That(result.Score, Is.EqualTo(c.Expected), result.Reason);
            Assert.That(elapsed, Is.LessThan(Limit + Margin));
        });
    }

    [TestCaseSource(nameof(AdversarialCases))]
    public void Adversarial(MathRewardCases.Case c)
    {
        var result = ScoreTimed(c, out var elapsed);
        TestContext.Out.WriteLine($"{elapsed.TotalMilliseconds:0.0} ms  {result.Score}  {result.Reason}");
        Assert.Multiple(() =>
        {
            Assert.That(elapsed, Is.LessThan(Limit + Margin));
            Assert.That(result.Score, Is.EqualTo(c.Expected), result.Reason);
            // Hostile input is refused by the size and depth caps, not by running into the clock.
            Assert.That(result.Reason, Does.Not.StartWith("time limit"));
            Assert.That(result.Reason, Does.Not.StartWith("verifier error"));
        });
    }

    [Test]
    public void TableIsLargeAndCoversBothOutcomes()
    {
        var all = MathRewardCases.Ordinary().Concat(MathRewardCases.Adversarial()).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(all, Has.Count.GreaterThanOrEqualTo(150));
            Assert.That(all.Count(c => c.Expected == 1), Is.GreaterThanOrEqualTo(60));
            Assert.That(all.Count(c => c.Expected == 0), Is.GreaterThanOrEqualTo(60));
        });
    }

    // ---- extraction alone ----

    [TestCase(@"first \boxed{1}, later \boxed{2}", "2", AnswerSource.Boxed)]
    [TestCase(@"\boxed{\frac{1}{\sqrt{2}}}", @"\frac{1}{\sqrt{2}}", AnswerSource.Boxed)]
    [TestCase(@"\boxed{\{1, 2\}}", @"\{1, 2\}", AnswerSource.Boxed)]
    [TestCase(@"\boxed{\}5}", @"\}5", AnswerSource.Boxed)]
    [TestCase(@"so $\boxed 7$ done", "7", AnswerSource.Boxed)]
    [TestCase(@"\fbox{x+1}", "x+1", AnswerSource.Boxed)]
    [TestCase(@"\boxed{3} and then \boxed{4", "3", AnswerSource.Boxed)]
    [TestCase(@"Final answer: 3. \boxed{4}", "4", AnswerSource.Boxed)]
    [TestCase(@"\boxedcontent{9} gives 8", "8", AnswerSource.LastNumber)]
    [TestCase("The final answer is $x^2$. I hope it is correct.", "x^2", AnswerSource.FinalAnswerPhrase)]
    [TestCase("FINAL ANSWER: 42", "42", AnswerSource.FinalAnswerPhrase)]
    [TestCase("The final answer is 3.5. Then", "3.5", AnswerSource.FinalAnswerPhrase)]
    [TestCase(@"The final answer is \(\frac{1}{2}\) indeed", @"\frac{1}{2}", AnswerSource.FinalAnswerPhrase)]
    [TestCase("Answer: 17\n", "17", AnswerSource.AnswerPhrase)]
    [TestCase("So the answer is 5, which is odd.", "5", AnswerSource.AnswerPhrase)]
    [TestCase("The answer is x = 3 since x > 0", "x = 3", AnswerSource.AnswerPhrase)]
    [TestCase("answer: 3 and 5", "3 and 5", AnswerSource.AnswerPhrase)]
    [TestCase("3 apples, 4.5 kg, total -12.", "-12", AnswerSource.LastNumber)]
    [TestCase("we need 1,000 people", "1,000", AnswerSource.LastNumber)]
    [TestCase("it costs 1,234,567.89 dollars", "1,234,567.89", AnswerSource.LastNumber)]
    [TestCase("the range 3-5", "5", AnswerSource.LastNumber)]
    [TestCase("points (1, 2) and (3, 4)", "4", AnswerSource.LastNumber)]
    [TestCase("half is .5 here", ".5", AnswerSource.LastNumber)]
    public void ExtractsTheAnswer(string text, string expected, AnswerSource source)
    {
        var found = AnswerExtractor.Extract(text);
        Assert.That(found, Is.EqualTo(new ExtractedAnswer(expected, source)));
    }

    [TestCase("")]
    [TestCase("no digits at all")]
    [TestCase(@"\boxed{}")]
    [TestCase(@"\boxed{{{")]
    public void ExtractsNothing(string text) => Assert.That(AnswerExtractor.Extract(text), Is.Null);

    [Test]
    public void ExtractionOnlySearchesTheTail()
    {
        string text = @"\boxed{5}" + new string('a', 20_000);
        Assert.Multiple(() =>
        {
            Assert.That(AnswerExtractor.Extract(text), Is.Null);
            Assert.That(AnswerExtractor.Extract(@"\boxed{5}" + new string('a', 5_000))?.Text, Is.EqualTo("5"));
        });
    }

    // ---- normalisation alone ----

    [TestCase(@"\dfrac{1}{2}", @"\frac{1}{2}")]
    [TestCase(@"\frac12", @"\frac{1}{2}")]
    [TestCase(@"\frac1{12}", @"\frac{1}{12}")]
    [TestCase(@"\frac{10}3", @"\frac{10}{3}")]
    [TestCase(@"\sqrt2", @"\sqrt{2}")]
    [TestCase(@"\sqrt x", @"\sqrt{x}")]
    [TestCase(@"10\text{ cm}", "10")]
    [TestCase(@"10 \text{cm}^{2}", "10")]
    [TestCase(@"\text{Monday}", "Monday")]
    [TestCase("1,000,000", "1000000")]
    [TestCase("(100,200)", "(100,200)")]
    [TestCase("(1, 2)", "(1,2)")]
    [TestCase(@"336^\circ", "336")]
    [TestCase(@"50\%", "50")]
    [TestCase("a^{2}", "a^2")]
    [TestCase(@"\left( 1, 2 \right)", "(1,2)")]
    [TestCase(@"2\frac{1}{2}", @"\frac{5}{2}")]
    [TestCase("-2 1/2", @"-\frac{5}{2}")]
    [TestCase(@"x \in [1, 3)", "[1,3)")]
    [TestCase(@"\boxed{7}.", "7")]
    [TestCase(@"$\$5$", "5")]
    [TestCase(@"\pi r^2", @"\pi r^2")]
    [TestCase(@"{{{5}}}", "5")]
    [TestCase(@"\left\{ 1, 2 \right\}", @"\{1,2\}")]
    [TestCase("\u22127", "-7")]
    [TestCase(@"x = 1 \text{ or } x = 2", "x=1,x=2")]
    public void Normalizes(string input, string expected) => Assert.That(LatexNormalizer.Normalize(input), Is.EqualTo(expected));

    // ---- equivalence alone ----

    [TestCase("1/2", "0.5", "numeric")]
    [TestCase("(1,2)", "(1, 2)", "string")]
    [TestCase(@"\{1,2\}", @"\{2,1\}", "set")]
    [TestCase("[1,3)", "[1, 3.0)", "interval")]
    [TestCase("x=5", "5", "equation, string")]
    [TestCase("2x+1", "1+2x", "symbolic")]
    public void NamesTheRuleThatMatched(string a, string b, string rule)
    {
        bool equal = MathEquivalence.AreEquivalent(a, b, out string matched);
        Assert.Multiple(() =>
        {
            Assert.That(equal, Is.True);
            Assert.That(matched, Is.EqualTo(rule));
        });
    }

    [TestCase("1/3", "0.33")]
    [TestCase(@"2\sqrt{3}", @"2\sqrt{2}")]
    [TestCase("(1,2)", "(2,1)")]
    [TestCase("[1,3)", "[1,3]")]
    [TestCase("", "")]
    public void TellsCloseLookingAnswersApart(string a, string b) => Assert.That(MathEquivalence.AreEquivalent(a, b), Is.False);

    // ---- the verifier's contract ----

    [Test]
    public void ScoresOnlyMathGroundTruth()
    {
        var code = new CodeGroundTruth(new JsonObject { ["inputs"] = "1", ["outputs"] = "1" });
        var result = _reward.Score(@"\boxed{1}", code, CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(_reward.CanScore(new MathGroundTruth(["1"])), Is.True);
            Assert.That(_reward.CanScore(code), Is.False);
            Assert.That(result.Score, Is.Zero);
            Assert.That(result.Reason, Does.StartWith("not a math ground truth"));
        });
    }

    [Test]
    public void ReasonsSayWhatHappened()
    {
        var truth = new MathGroundTruth(["5"]);
        Assert.Multiple(() =>
        {
            Assert.That(_reward.Score(@"\boxed{7}", truth, CancellationToken.None),
                Is.EqualTo(RewardResult.Wrong("wrong: extracted '7', expected one of ['5']")));
            Assert.That(_reward.Score("nothing here", truth, CancellationToken.None),
                Is.EqualTo(RewardResult.Wrong("no answer found")));
            Assert.That(_reward.Score(@"\boxed{1/2}", new MathGroundTruth(["0.5"]), CancellationToken.None),
                Is.EqualTo(RewardResult.Correct("correct: 1/2 == 0.5 (numeric)")));
            Assert.That(_reward.Score(@"\boxed{5}", new MathGroundTruth([]), CancellationToken.None).Score, Is.Zero);
        });
    }

    [Test]
    public void CancelledTokenScoresZero()
    {
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        var result = _reward.Score(@"\boxed{5}", new MathGroundTruth(["5"]), cancelled.Token);
        Assert.That(result, Is.EqualTo(RewardResult.Wrong("cancelled")));
    }

    [Test]
    public void TimeLimitStopsSlowVerification()
    {
        var hurried = new MathReward(new MathRewardOptions { TimeLimit = TimeSpan.FromTicks(1) });
        string heavy = @"\boxed{" + string.Join("+", Enumerable.Range(1, 600).Select(i => $"\\frac{{1}}{{{i}}}")) + "}";
        var watch = Stopwatch.StartNew();
        var result = hurried.Score(heavy, new MathGroundTruth(["7"]), CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(result.Score, Is.Zero);
            Assert.That(result.Reason, Does.StartWith("time limit"));
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromMilliseconds(200)));
        });
    }

    [Test]
    public void DefaultOptionsMatchTheRecipe()
    {
        var options = new MathReward().Options;
        Assert.Multiple(() =>
        {
            Assert.That(options.TimeLimit, Is.EqualTo(TimeSpan.FromSeconds(1)));
            Assert.That(options.MaxAnswerChars, Is.EqualTo(10_000));
            Assert.That(options.MaxNumberDigits, Is.EqualTo(1_000));
        });
    }

    [Test]
    public void MaxNumberDigitsIsConfigurable()
    {
        var strict = new MathReward(new MathRewardOptions { MaxNumberDigits = 3 });
        var truth = new MathGroundTruth(["1/2"]);
        Assert.Multiple(() =>
        {
            // "0.5" has two digits and is parsed; "0.5000" has five, is compared only as a string, and differs.
            Assert.That(strict.Score(@"\boxed{0.5}", truth, CancellationToken.None).Score, Is.EqualTo(1));
            Assert.That(strict.Score(@"\boxed{0.5000}", truth, CancellationToken.None).Score, Is.Zero);
            Assert.That(_reward.Score(@"\boxed{0.5000}", truth, CancellationToken.None).Score, Is.EqualTo(1));
        });
    }

    [Test]
    public void RouterGradesOnlyTheTextAfterThinking()
    {
        var router = new RewardRouter([new MathReward()]);
        var truth = new MathGroundTruth(["5"]);
        Assert.Multiple(() =>
        {
            Assert.That(router.Score(@"<think>maybe \boxed{3}</think> so \boxed{5}", truth, truncated: false).Score, Is.EqualTo(1));
            Assert.That(router.Score(@"<think>surely \boxed{5}</think> so \boxed{3}", truth, truncated: false).Score, Is.Zero);
        });
    }

    [Test]
    public void RandomLatexNeverCrashesOrOverruns()
    {
        string[] tokens =
        [
            @"\boxed{", "{", "}", @"\frac", @"\sqrt", "^", "_", "(", ")", "[", "]", @"\{", @"\}", ",", "=", "1", "2", "0",
            "9", ".", "-", "+", "*", "/", "x", "y", @"\pi", @"\infty", @"\text{", "cm", " ", @"\", "$", "%", @"\left(",
            @"\right)", @"\pm", @"\cup", "&", @"\\", @"\begin{pmatrix}", @"\end{pmatrix}", "e", "!", "\u00B0", "answer:",
            "final answer is", @"\in", " or ", " and ", @"\dfrac12", "^{", @"\circ", @"\%", "1,000", @"\sqrt[3]", "\n",
        ];
        var random = new Random(7);
        string Generate(int maxTokens) =>
            string.Concat(Enumerable.Range(0, random.Next(1, maxTokens)).Select(_ => tokens[random.Next(tokens.Length)]));

        var slowest = TimeSpan.Zero;
        var failures = new List<string>();
        for (int i = 0; i < 3_000; i++)
        {
            string response = Generate(60), truth = Generate(12);
            var watch = Stopwatch.StartNew();
            var result = _reward.Score(response, new MathGroundTruth([truth]), CancellationToken.None);
            var elapsed = watch.Elapsed;
            if (elapsed > slowest) slowest = elapsed;
            if (result.Reason.StartsWith("verifier error", StringComparison.Ordinal) || result.Reason.StartsWith("time limit", StringComparison.Ordinal)
                || elapsed > Limit + Margin || result.Score is not (0 or 1))
                failures.Add($"{response} | {truth} | {result.Reason} | {elapsed.TotalMilliseconds:0} ms");
        }
        TestContext.Out.WriteLine($"slowest of 3000 random answers: {slowest.TotalMilliseconds:0.0} ms");
        Assert.That(failures, Is.Empty);
    }
}

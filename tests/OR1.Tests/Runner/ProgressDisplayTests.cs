using OR1.Runner.Cli;

namespace OR1.Tests.Runner;

/// <summary>The plain progress lines a redirected `or1 eval` / `or1 generate` writes.</summary>
public sealed class ProgressDisplayTests
{
    [Test]
    public void PlainLine_HasCountsShareDetailElapsedAndRemaining()
    {
        string line = ProgressDisplay.PlainLine("eval: samples", 1234, 6400, "812 tok/s, avg@8 45.2% over 150 problems", TimeSpan.FromSeconds(83));
        Assert.That(line, Is.EqualTo("eval: samples: 1,234/6,400 (19%)  812 tok/s, avg@8 45.2% over 150 problems  elapsed 0:01:23  remaining 0:05:47"));
    }

    [Test]
    public void PlainLine_AtTheStartAndTheEnd()
    {
        Assert.That(ProgressDisplay.PlainLine("generate", 0, 10, "", TimeSpan.Zero), Does.EndWith("(0%)  elapsed 0:00:00  remaining ?"));
        Assert.That(ProgressDisplay.PlainLine("generate", 10, 10, "", TimeSpan.FromHours(2.5)), Does.EndWith("(100%)  elapsed 2:30:00  remaining 0:00:00"));
    }

    [Test]
    public void Redirected_PrintsAboutTwentyLines_NotOnePerReport()
    {
        var saved = Console.Error;
        var captured = new StringWriter();
        Console.SetError(captured);
        try
        {
            // Under the test runner stderr is redirected, so the plain form is used.
            Assume.That(Console.IsErrorRedirected, "stderr is a terminal here; the plain form is for redirected output");
            int result = ProgressDisplay.Run("work", update =>
            {
                for (int i = 1; i <= 1000; i++) update(i, 1000, $"item {i}");
                return 42;
            });
            Assert.That(result, Is.EqualTo(42));
        }
        finally
        {
            Console.SetError(saved);
        }
        string[] lines = captured.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(21), "the first report, then one line per 5%");
        Assert.That(lines[0], Does.StartWith("work: 1/1,000 (0%)  item 1"));
        Assert.That(lines[^1], Does.StartWith("work: 1,000/1,000 (100%)  item 1000"));
    }
}

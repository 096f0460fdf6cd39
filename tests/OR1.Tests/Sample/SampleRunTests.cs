using System.Text.Json;
using OR1.Runner.Commands;

namespace OR1.Tests.Sample;

/// <summary>
/// `or1 sample --quick` end to end, as the README's first command runs it: every output exists and
/// summary.json agrees with metrics.jsonl. Whether the model learned is the full run's benchmark, not this test.
/// </summary>
public sealed class SampleRunTests
{
    private string _out = null!;

    [OneTimeSetUp]
    public void RunQuickSample()
    {
        _out = Path.Combine(Path.GetTempPath(), "or1-sample-" + Guid.NewGuid().ToString("N"));
        Assert.That(SampleCommand.Run("cpu", seed: 3, _out, quick: true, configPath: null), Is.Zero);
    }

    [OneTimeTearDown]
    public void Clean()
    {
        if (_out is not null && Directory.Exists(_out)) Directory.Delete(_out, recursive: true);
    }

    [Test]
    public void EveryOutputFileExists()
    {
        string[] files =
        [
            "summary.json", "metrics.jsonl", "reward.png", "accuracy.png", "entropy.png", "length.png",
            "final/config.json", "final/model.safetensors", "final/tokenizer.json", "final/tokenizer_config.json",
            "warmup/model.safetensors", "data/train.jsonl", "data/heldout.jsonl",
        ];
        foreach (var file in files)
            Assert.That(new FileInfo(Path.Combine(_out, file)).Length, Is.GreaterThan(0), file);
    }

    [Test]
    public void SummaryIsConsistentWithMetrics()
    {
        using var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(_out, "summary.json")));
        var root = summary.RootElement;
        var metrics = File.ReadAllLines(Path.Combine(_out, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        int completed = metrics.Count(m => !m.GetProperty("skipped").GetBoolean());
        Assert.Multiple(() =>
        {
            Assert.That(root.GetProperty("steps").GetInt32(), Is.EqualTo(completed));
            Assert.That(root.GetProperty("skipped_steps").GetInt32(), Is.EqualTo(metrics.Length - completed));
            Assert.That(completed, Is.EqualTo(6), "the quick schedule has two stages of 3 steps");
            // Every record has its own step, skipped ones included; updates count the steps that trained.
            Assert.That(metrics.Select(m => m.GetProperty("step").GetInt32()), Is.EqualTo(Enumerable.Range(1, metrics.Length)));
            Assert.That(metrics.Where(m => !m.GetProperty("skipped").GetBoolean()).Select(m => m.GetProperty("updates").GetInt32()), Is.EqualTo(Enumerable.Range(1, completed)));
            Assert.That(root.GetProperty("k").GetInt32(), Is.EqualTo(4));
            foreach (var name in new[] { "avg_at_k_before", "avg_at_k_after", "pass_at_1_before", "pass_at_1_after" })
                Assert.That(root.GetProperty(name).GetDouble(), Is.InRange(0.0, 1.0), name);
            Assert.That(root.GetProperty("wall_seconds").GetDouble(), Is.GreaterThan(0));
            Assert.That(root.GetProperty("backend").GetString(), Does.StartWith("Cpu"));
            double before = root.GetProperty("avg_at_k_before_by_level").EnumerateObject().Average(p => p.Value.GetDouble());
            Assert.That(root.GetProperty("avg_at_k_before").GetDouble(), Is.EqualTo(before).Within(1e-9), "equal-size levels: overall = mean of levels");
        });
    }

    [Test]
    public void SameSeedGivesTheSameSummaryNumbers()
    {
        string again = _out + "-again";
        try
        {
            Assert.That(SampleCommand.Run("cpu", seed: 3, again, quick: true, configPath: null), Is.Zero);
            string[] deterministic = ["k", "avg_at_k_before", "avg_at_k_after", "pass_at_1_before", "pass_at_1_after", "steps", "skipped_steps", "warmup_loss"];
            using var a = JsonDocument.Parse(File.ReadAllText(Path.Combine(_out, "summary.json")));
            using var b = JsonDocument.Parse(File.ReadAllText(Path.Combine(again, "summary.json")));
            foreach (var name in deterministic)
                Assert.That(b.RootElement.GetProperty(name).GetRawText(), Is.EqualTo(a.RootElement.GetProperty(name).GetRawText()), name);
            Assert.That(File.ReadAllBytes(Path.Combine(again, "final", "model.safetensors")), Is.EqualTo(File.ReadAllBytes(Path.Combine(_out, "final", "model.safetensors"))));
        }
        finally
        {
            if (Directory.Exists(again)) Directory.Delete(again, recursive: true);
        }
    }

    [Test]
    public void FinalCheckpointIsUsableByGenerate()
    {
        var args = new GenerateCommand.Arguments(Path.Combine(_out, "final"), "12+34", null, Path.Combine(_out, "gen.jsonl"), 2, 20,
            new OR1.Native.SamplingOptions(1f), 1, 4, "cpu");
        Assert.That(GenerateCommand.Run(args), Is.Zero);
        Assert.That(File.ReadAllLines(Path.Combine(_out, "gen.jsonl")), Has.Length.EqualTo(2));
    }
}

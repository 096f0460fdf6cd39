using System.Text.Json;
using OR1.Grpo.Training;
using OR1.Model;
using OR1.Model.Checkpoints;
using OR1.Native.Cpu;
using OR1.Runner.Cli;
using OR1.Runner.Commands;
using OR1.Tests.Model;
using OR1.Tests.Support;

namespace OR1.Tests.Runner;

/// <summary>`or1 step`: one MAGIC update from a rollouts file, its checkpoint, metrics and clipped gradients.</summary>
public sealed class StepCommandTests
{
    private string _dir = null!;

    [SetUp]
    public void Create() => _dir = Directory.CreateTempSubdirectory("or1-step-").FullName;

    [TearDown]
    public void Clean() => Directory.Delete(_dir, recursive: true);

    private string WriteModel() => TinyModels.SaveCheckpoint(_dir, seed: 21);

    [Test]
    public void UpdatesTheCheckpointAndWritesMetricsAndClippedGradients()
    {
        string model = WriteModel();
        string rollouts = Path.Combine(_dir, "rollouts.jsonl");
        File.WriteAllLines(rollouts,
        [
            """{"group": "a", "prompt_tokens": [1, 2, 3], "response_tokens": [4, 5], "reward": 1, "truncated": false}""",
            """{"group": "a", "prompt_tokens": [1, 2, 3], "response_tokens": [6, 7, 8], "reward": 0, "truncated": false}""",
            """{"group": 7, "prompt_tokens": [9], "response_tokens": [10], "reward": 0, "truncated": true, "old_logprobs": [-2.5]}""",
            """{"group": 7, "prompt_tokens": [9], "response_tokens": [11, 12], "reward": 1, "truncated": false}""",
        ]);
        string output = Path.Combine(_dir, "out");
        var options = new MagicOptions { LearningRate = 1e-3, FixedEntropyCoefficient = 0.004, MaxGradNorm = 0.01 };
        Assert.That(StepCommand.Run(model, rollouts, output, options, saveGrads: true, "cpu"), Is.Zero);

        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "metrics.json")));
        Assert.Multiple(() =>
        {
            Assert.That(metrics.RootElement.GetProperty("kept_groups").GetInt32(), Is.EqualTo(2));
            Assert.That(metrics.RootElement.GetProperty("entropy_coefficient").GetDouble(), Is.EqualTo(0.004), "exactly --entropy-coef");
            Assert.That(metrics.RootElement.GetProperty("optimizer_steps").GetInt32(), Is.EqualTo(1));
        });
        double gradNorm = metrics.RootElement.GetProperty("grad_norm").GetDouble();
        Assert.That(gradNorm, Is.GreaterThan(0.01), "the test wants the clip to be active");

        using var before = SafetensorsFile.Open(Path.Combine(model, "model.safetensors"));
        using var after = SafetensorsFile.Open(Path.Combine(output, "model.safetensors"));
        using var grads = SafetensorsFile.Open(Path.Combine(output, "grads.safetensors"));
        var shapes = Qwen2Checkpoint.ParameterShapes(TinyModels.Config(tied: false));
        Assert.That(grads.Tensors.Keys, Is.EquivalentTo(shapes.Select(s => s.Name)));
        double sumSquares = 0;
        foreach (var (name, shape) in shapes)
        {
            Assert.That(grads.GetEntry(name).HasShape(shape), name);
            sumSquares += grads.ReadAsFloat32(name).Sum(g => (double)g * g);
        }
        // Saved gradients are the clipped ones: their global norm is max_grad_norm.
        Assert.That(Math.Sqrt(sumSquares), Is.EqualTo(0.01).Within(1e-4));
        Assert.That(after.ReadAsFloat32("model.norm.weight"), Is.Not.EqualTo(before.ReadAsFloat32("model.norm.weight")), "weights were updated");
        Assert.That(File.Exists(Path.Combine(output, "config.json")));
    }

    [Test]
    public void MalformedRolloutNamesFileAndLineAndWritesNothing()
    {
        string model = WriteModel();
        string rollouts = Path.Combine(_dir, "bad.jsonl");
        File.WriteAllLines(rollouts, ["""{"group": "a", "prompt_tokens": [1], "response_tokens": [2], "reward": 1}""", """{"group": "a", "prompt_tokens": [1], "reward": 0}"""]);
        string output = Path.Combine(_dir, "never");
        Assert.That(() => StepCommand.Run(model, rollouts, output, new MagicOptions(), false, "cpu"),
            Throws.TypeOf<CliException>().With.Message.Contains("bad.jsonl line 2").And.Message.Contains("response_tokens"));
        Assert.That(Directory.Exists(output), Is.False);
    }

    [TestCase("--grad-bucket-elements is 100; it must be a positive multiple of 64")]
    public void AnOptionOutOfRangeIsNamedByItsFlagAndNothingIsWritten(string expected)
    {
        string output = Path.Combine(_dir, "never");
        var e = Assert.Throws<CliException>(() => StepCommand.Run(WriteModel(), Path.Combine(_dir, "none.jsonl"), output,
            new MagicOptions { GradientBucketElements = 100 }, false, "cpu"));
        Assert.That(e!.Message, Is.EqualTo(expected));
        Assert.That(Directory.Exists(output), Is.False);
    }
}

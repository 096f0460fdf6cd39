using System.Text.Json;
using OR1.Grpo.Data;
using OR1.Grpo.Rewards;
using OR1.Grpo.Training;
using OR1.Model;
using OR1.Native;
using OR1.Native.Cpu;
using OR1.Tests.Model;

namespace OR1.Tests.Training;

/// <summary>
/// `or1 train`'s engine on a tiny random model: two stages end to end with metrics, validation and
/// checkpoints; the solved-prompt filter at the stage transition; and an interrupted run that, resumed
/// from its checkpoint, ends with bit-identical weights to an uninterrupted one.
/// </summary>
public sealed class TrainingRunTests
{
    private TinyTokenizerFiles _model = null!;
    private string _root = null!;

    /// <summary>
    /// Deterministic stand-in verifier: prompts whose answer is "ALWAYS" are always solved; others score 1
    /// when the response has an even number of characters, which gives mixed groups with a random model.
    /// </summary>
    private sealed class ToyVerifier : IRewardFunction
    {
        public bool CanScore(GroundTruth truth) => truth is MathGroundTruth;

        public RewardResult Score(string answer, GroundTruth truth, CancellationToken cancellation) =>
            ((MathGroundTruth)truth).Answers.Contains("ALWAYS") || answer.Length % 2 == 0 ? RewardResult.Correct() : RewardResult.Wrong("odd");
    }

    [OneTimeSetUp]
    public void WriteModelAndData()
    {
        _model = TinyTokenizerFiles.Create();
        using (var backend = new CpuBackend(threads: 2))
        using (var model = new Qwen2Model(backend, TinyModels.Config(tied: true, vocab: TinyTokenizerFiles.VocabSize) with { EosTokenIds = [TinyTokenizerFiles.EndOfSentenceId] }))
        {
            TinyModels.Randomize(model.Weights, 5);
            Qwen2ModelFiles.Save(model, _model.Directory);
        }
        _root = Path.Combine(Path.GetTempPath(), "or1-train-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_root);
        string Row(int index, string question, string answer) => JsonSerializer.Serialize(new
        {
            data_source = "toy",
            prompt = new[] { new { role = "user", content = question } },
            ability = "math",
            reward_model = new { ground_truth = JsonSerializer.Serialize(new[] { answer }), style = "rule" },
            extra_info = new { index },
        });
        File.WriteAllLines(Path.Combine(_root, "train.jsonl"), [Row(0, "the thing", "ALWAYS"), Row(1, "the other", "1"), Row(2, "hello", "2"), Row(3, "th th", "3")]);
        File.WriteAllLines(Path.Combine(_root, "val.jsonl"), [Row(10, "the", "4"), Row(11, "other", "5")]);
    }

    [OneTimeTearDown]
    public void Clean()
    {
        _model?.Dispose();
        if (_root is not null && Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private TrainingConfig Config(string name) => new()
    {
        Model = _model.Directory,
        TrainFiles = [Path.Combine(_root, "train.jsonl")],
        ValidationFiles = [Path.Combine(_root, "val.jsonl")],
        OutputDir = Path.Combine(_root, name),
        Seed = 3,
        LearningRate = 1e-2,
        EntropyTarget = 5,
        EntropyDelta = 1e-3,
        Stages = [new StageConfig(2, 6, 4, 2, 3), new StageConfig(2, 8, 2, 2, 4)],
        CheckpointEvery = 1,
        KeepCheckpoints = 10,
        ValidateEvery = 2,
        ValidationK = 2,
        ValidationTemperatures = [1f],
        MicroBatchTokens = 40,
        // A random model rarely emits EOS within 6 tokens; keep truncated responses scoreable so groups vary.
        ZeroRewardForTruncated = false,
    };

    private static TrainingSetup.Session Session(TrainingConfig config, string? resume = null) =>
        TrainingSetup.Create(config, _ => new CpuBackend(threads: 2), [new ToyVerifier()], resume, TextWriter.Null);

    private static JsonElement[] Lines(string path) => File.ReadAllLines(path).Select(l => JsonDocument.Parse(l).RootElement).ToArray();

    [Test]
    public void SixtyFourSkippedStepsEndTheRunWithAClearError_EachStepWithItsOwnNumber()
    {
        // Every prompt is always solved: every group has equal rewards and every step is skipped.
        string data = Path.Combine(_root, "always.jsonl");
        File.WriteAllLines(data,
        [
            """{"data_source": "toy", "prompt": [{"role": "user", "content": "the thing"}], "ability": "math", "reward_model": {"ground_truth": "[\"ALWAYS\"]", "style": "rule"}, "extra_info": {"index": 0}}""",
            """{"data_source": "toy", "prompt": [{"role": "user", "content": "hello"}], "ability": "math", "reward_model": {"ground_truth": "[\"ALWAYS\"]", "style": "rule"}, "extra_info": {"index": 1}}""",
        ]);
        var config = Config("stalled") with { TrainFiles = [data], ValidationFiles = [], Stages = [new StageConfig(3, 4, 2, 2, 2)] };
        using var session = Session(config);
        var error = Assert.Throws<TrainingStalledException>(() => session.Run.Run());
        Assert.That(error!.Message, Does.Contain("64 consecutive steps had no group with mixed rewards")
            .And.Contain("no checkpoint was written yet").And.Contain(session.Run.MetricsPath).And.Contain("after 0 updates"));
        var metrics = Lines(session.Run.MetricsPath);
        Assert.That(metrics.Select(m => m.GetProperty("step").GetInt32()), Is.EqualTo(Enumerable.Range(1, 64)), "one record per step, numbered 1..64");
        Assert.That(metrics.Select(m => m.GetProperty("skipped").GetBoolean()), Has.All.True);
        Assert.That(metrics.Select(m => m.GetProperty("updates").GetInt32()), Has.All.Zero);
    }

    [Test]
    public void TwoStagesRunEndToEndWithMetricsValidationAndCheckpoints()
    {
        var config = Config("full");
        using (var session = Session(config)) session.Run.Run();
        var metrics = Lines(Path.Combine(config.OutputDir, "metrics.jsonl")).Where(m => !m.GetProperty("skipped").GetBoolean()).ToArray();
        Assert.That(metrics.Select(m => m.GetProperty("step").GetInt32()), Is.EqualTo(new[] { 1, 2, 3, 4 }));
        Assert.That(metrics.Select(m => m.GetProperty("stage").GetInt32()), Is.EqualTo(new[] { 1, 1, 2, 2 }));
        Assert.That(metrics.Take(2).All(m => m.GetProperty("response_length_max").GetInt32() <= 6), "stage 1 caps responses at 6 tokens");
        Assert.That(metrics.Skip(2).All(m => m.GetProperty("groups").GetInt32() == 2), "stage 2 draws 2 prompts per step");
        Assert.That(metrics.All(m => m.GetProperty("optimizer_steps").GetInt32() >= 1));

        var validation = Lines(Path.Combine(config.OutputDir, "validation.jsonl"));
        Assert.That(validation.Select(v => v.GetProperty("step").GetInt32()).Distinct(), Is.EqualTo(new[] { 0, 2, 4 }));
        Assert.That(validation.All(v => v.GetProperty("k").GetInt32() == 2 && v.GetProperty("problems").GetInt32() == 2));

        string? latest = TrainingRun.LatestCheckpoint(config.OutputDir);
        Assert.That(latest, Does.EndWith("step-000004"));
        foreach (var file in new[] { "config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json", "tokenizer.json" })
            Assert.That(File.Exists(Path.Combine(latest!, file)), $"{file} in the checkpoint");
        var state = TrainerState.Load(latest!);
        Assert.That(state.RemovedIds, Is.EqualTo(new[] { "toy/0" }), "the always-solved prompt is dropped at the stage transition");
        Assert.That(state.GlobalStep, Is.EqualTo(4));
        Assert.That(Directory.GetDirectories(Path.Combine(config.OutputDir, "checkpoints"), ".*"), Is.Empty, "no temporary checkpoint folder is left");
    }

    /// <summary>A checkpoint without room on the disk stops the run with the store's clear error before a byte is written; the previous checkpoint stays the latest.</summary>
    [Test]
    public void ACheckpointWithoutRoomStopsTheRunAndKeepsThePreviousOne()
    {
        var config = Config("full-disk");
        using var session = Session(config);
        string first = session.Run.SaveCheckpoint()!;
        session.Run.Checkpoints.FreeBytesOverride = _ => 1000;
        var error = Assert.Throws<IOException>(() => session.Run.SaveCheckpoint())!;
        Assert.That(error.Message, Does.Contain("needs").And.Contain("0.0 GB free").And.Contain("keep_checkpoints"));
        Assert.That(TrainingRun.LatestCheckpoint(config.OutputDir), Is.EqualTo(first));
        Assert.That(Directory.GetDirectories(Path.Combine(config.OutputDir, "checkpoints"), ".*"), Is.Empty, "no temporary folder");
    }

    [Test]
    public void InterruptedAndResumedRunEndsWithBitIdenticalWeights()
    {
        var straight = Config("straight");
        using (var session = Session(straight)) session.Run.Run();

        var interrupted = Config("interrupted");
        using (var session = Session(interrupted)) session.Run.Run(stopAfterStep: 3);
        string? checkpoint = TrainingRun.LatestCheckpoint(interrupted.OutputDir);
        Assert.That(checkpoint, Does.EndWith("step-000003"));
        using (var session = Session(interrupted, checkpoint)) session.Run.Run();

        string a = Path.Combine(TrainingRun.LatestCheckpoint(straight.OutputDir)!, "model.safetensors");
        string b = Path.Combine(TrainingRun.LatestCheckpoint(interrupted.OutputDir)!, "model.safetensors");
        Assert.That(File.ReadAllBytes(b), Is.EqualTo(File.ReadAllBytes(a)), "final weights differ after resuming");
        Assert.That(File.ReadAllBytes(Path.Combine(Path.GetDirectoryName(b)!, "optimizer.safetensors")),
            Is.EqualTo(File.ReadAllBytes(Path.Combine(Path.GetDirectoryName(a)!, "optimizer.safetensors"))), "optimizer moments differ after resuming");

        string[] Deterministic(string dir) => Lines(Path.Combine(dir, "metrics.jsonl"))
            .Select(m => $"{m.GetProperty("step")} {m.GetProperty("reward_mean")} {m.GetProperty("policy_loss")} {m.GetProperty("grad_norm")} {m.GetProperty("entropy_coefficient")}").ToArray();
        Assert.That(Deterministic(interrupted.OutputDir), Is.EqualTo(Deterministic(straight.OutputDir)), "metrics of the resumed run");
    }

    [Test]
    public void BadConfigNamesTheFileAndTheField()
    {
        string path = Path.Combine(_root, "bad.json");
        File.WriteAllText(path, """{"model": "m", "train_files": ["x.jsonl"], "output_dir": "o", "stages": [{"steps": 1, "max_response_length": 8, "prompts_per_step": 4, "prompts_per_mini_batch": 3, "group_size": 2}]}""");
        Assert.That(() => TrainingConfig.Load(path), Throws.TypeOf<TrainingConfigException>().With.Message.Contains("bad.json").And.Message.Contains("prompts_per_mini_batch"));
        File.WriteAllText(path, """{"model": "m", "train_files": ["x.jsonl"], "output_dir": "o", "stages": [], "learning_rat": 1}""");
        Assert.That(() => TrainingConfig.Load(path), Throws.TypeOf<TrainingConfigException>().With.Message.Contains("learning_rat"));
    }
}

using System.Diagnostics;
using System.Text.Json;
using OR1.Grpo.Checkpoints;
using OR1.Grpo.Training;
using OR1.Model;
using OR1.Model.Checkpoints;
using OR1.Native.Cpu;
using OR1.Runner.Commands;
using OR1.Tests.Support;

namespace OR1.Tests.Distributed;

/// <summary>
/// `mpirun -np 2 or1 train` on the bundled sample's task (its warm-up checkpoint and arithmetic data, from a quick
/// sample run): every record of metrics.jsonl and validation.jsonl equals one process's (within 1e-5 of the value, or of 1
/// for values below 1; timings and the engine's per-rank counters aside) and so do the weights, with world_size 2 and
/// rank 0 the only writer; a 2-rank
/// checkpoint resumes in one process, saying so, and continues as the single run did; and a rank killed mid-run stops
/// every rank, named, leaving the last checkpoint complete.
/// </summary>
public sealed class MpiTrainTests
{
    private string _dir = null!;
    private string _sample = null!;

    [OneTimeSetUp]
    public void RunQuickSample()
    {
        MpiWorldTests.RequireMpirun();
        _dir = Directory.CreateTempSubdirectory("or1-mpi-train-").FullName;
        _sample = Path.Combine(_dir, "sample");
        // The quick sample with a longer warm-up (about 15 s), after which the policy solves about half of the two easiest
        // levels' problems: steps keep several groups with mixed rewards to share between the ranks.
        string schedule = Path.Combine(_dir, "schedule.json");
        File.WriteAllText(schedule, """{"warmup_steps": 1500, "stages": [{"steps": 1, "max_response_length": 40, "prompts_per_step": 4, "prompts_per_mini_batch": 4, "group_size": 2}]}""");
        Assert.That(SampleCommand.Run("cpu", seed: 7, _sample, quick: true, configPath: schedule), Is.Zero);
        // The two easiest levels: the warmed-up policy solves a fair share of them.
        File.WriteAllLines(Path.Combine(_dir, "train.jsonl"), File.ReadLines(Path.Combine(_sample, "data", "train.jsonl"))
            .Where(l => l.Contains("\"arith-level1\"") || l.Contains("\"arith-level2\"")));
    }

    [OneTimeTearDown]
    public void Clean()
    {
        if (_dir is not null && Directory.Exists(_dir) && Environment.GetEnvironmentVariable("OR1_KEEP_TEST_DIR") is null) Directory.Delete(_dir, recursive: true);
    }

    /// <summary>A few steps of the sample's task: two mini-batches a step, validation every two updates, a checkpoint every update.</summary>
    private string WriteConfig(string name, int steps)
    {
        // A held-out slice for validation: 3 chunks of 4 problems x 2 samples on a generator of 8 slots, so both ranks run chunks.
        string validation = Path.Combine(_dir, "validation.jsonl");
        if (!File.Exists(validation)) File.WriteAllLines(validation, File.ReadLines(Path.Combine(_sample, "data", "heldout.jsonl")).Take(12));
        string path = Path.Combine(_dir, name + ".json");
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            model = Path.Combine(_sample, "warmup"),
            train_files = new[] { Path.Combine(_dir, "train.jsonl") },
            validation_files = new[] { validation },
            output_dir = Path.Combine(_dir, name),
            seed = 11,
            learning_rate = 4e-4,
            entropy_target = 0.05,
            entropy_delta = 2e-4,
            entropy_coef_max = 5e-3,
            stages = new[] { new { steps, max_response_length = 40, prompts_per_step = 8, prompts_per_mini_batch = 4, group_size = 4 } },
            rollout_batch = 8,
            validation_k = 2,
            validate_every = 2,
            checkpoint_every = 1,
            keep_checkpoints = 10,
            micro_batch_tokens = 600,
        }));
        return path;
    }

    private static async Task<(int Code, string Output, string Error)> Mpirun(int ranks, params string[] command) =>
        await ChildProcess.RunAsync(MpiWorldTests.RequireMpirun(), MpiWorldTests.MpirunArguments(ranks, command), TimeSpan.FromMinutes(6),
            environment: new Dictionary<string, string> { ["TERM"] = "dumb" });

    private static JsonElement[] Lines(string path) => File.ReadAllLines(path).Select(l => JsonDocument.Parse(l).RootElement).ToArray();

    /// <summary>
    /// What legitimately differs between the ranks' run and one process's: timings, the per-rank engine's counters and
    /// log-prob tiling (a rank's micro-batches are its share), the world and its optimizer state.
    /// </summary>
    private static bool Compared(string field) =>
        !field.Contains("seconds") && !field.Contains("per_second") && !field.StartsWith("rollout_") && !field.StartsWith("log_prob_") &&
        field is not ("world_size" or "optimizer_state_bytes");

    /// <summary>Every compared field of <paramref name="actual"/> equals <paramref name="expected"/>'s (numbers within a relative 1e-5), recursively.</summary>
    private static void AssertSameRecord(JsonElement actual, JsonElement expected, string where, List<string> failures)
    {
        switch (expected.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in expected.EnumerateObject().Where(p => Compared(p.Name)))
                {
                    if (!actual.TryGetProperty(property.Name, out var value)) failures.Add($"{where}.{property.Name}: missing");
                    else AssertSameRecord(value, property.Value, $"{where}.{property.Name}", failures);
                }
                break;
            case JsonValueKind.Array:
                var (a, e) = (actual.EnumerateArray().ToArray(), expected.EnumerateArray().ToArray());
                if (a.Length != e.Length) failures.Add($"{where}: {a.Length} entries, one process has {e.Length}");
                else for (int i = 0; i < e.Length; i++) AssertSameRecord(a[i], e[i], $"{where}[{i}]", failures);
                break;
            case JsonValueKind.Number:
                // After the first update the ranks' weights differ from one process's in the last bits (the gradients are
                // summed in another order). Loss terms and the PPO KL are means of per-token terms of order 1 that nearly
                // cancel, so their error is relative to the terms: values below 1 are held to 1e-5 absolute.
                double x = actual.GetDouble(), y = expected.GetDouble();
                if (Math.Abs(x - y) > 1e-5 * Math.Max(1, Math.Abs(y))) failures.Add($"{where}: {x} against one process's {y}");
                break;
            default:
                if (actual.GetRawText() != expected.GetRawText()) failures.Add($"{where}: {actual.GetRawText()} against one process's {expected.GetRawText()}");
                break;
        }
    }

    private static void AssertSameLog(string actualPath, string expectedPath)
    {
        JsonElement[] actual = Lines(actualPath), expected = Lines(expectedPath);
        Assert.That(actual, Has.Length.EqualTo(expected.Length), $"{actualPath}: one record per step (rank 0 alone writes)");
        var failures = new List<string>();
        for (int i = 0; i < expected.Length; i++) AssertSameRecord(actual[i], expected[i], $"{Path.GetFileName(actualPath)} line {i + 1}", failures);
        Assert.That(failures, Is.Empty, string.Join("\n", failures));
    }

    [Test]
    public async Task TwoRanksTrainAsOneProcessAndResumeInOne()
    {
        string single = WriteConfig("single", steps: 3), parallel = WriteConfig("np2", steps: 3);
        Assert.That(TrainCommand.Run(single, resume: null), Is.Zero);
        var (code, output, error) = await Mpirun(2, "train", "--config", parallel);
        TestContext.Out.WriteLine(output + error);
        Assert.That(code, Is.Zero, error);
        Assert.That(output, Does.Contain("world size 2 (mpi (Open MPI").And.Contain("optimizer sharded (ZeRO-1)"), "the start-up line names the world");
        Assert.That(output.Split('\n').Count(l => l.StartsWith("train: done", StringComparison.Ordinal)), Is.EqualTo(1), "rank 0 alone prints");

        string singleDir = Path.Combine(_dir, "single"), parallelDir = Path.Combine(_dir, "np2");
        var metrics = Lines(Path.Combine(parallelDir, "metrics.jsonl"));
        Assert.That(metrics.Select(m => m.GetProperty("world_size").GetInt32()), Has.All.EqualTo(2));
        Assert.That(Lines(Path.Combine(singleDir, "metrics.jsonl")).Select(m => m.GetProperty("world_size").GetInt32()), Has.All.EqualTo(1));
        Assert.That(metrics.Count(m => !m.GetProperty("skipped").GetBoolean()), Is.EqualTo(3), "three updates");
        Assert.That(metrics.Any(m => !m.GetProperty("skipped").GetBoolean() && m.GetProperty("kept_groups").GetInt32() >= 4),
            "groups to share between the ranks (the warm-up policy gives mixed rewards)");
        AssertSameLog(Path.Combine(parallelDir, "metrics.jsonl"), Path.Combine(singleDir, "metrics.jsonl"));
        AssertSameLog(Path.Combine(parallelDir, "validation.jsonl"), Path.Combine(singleDir, "validation.jsonl"));
        Assert.That(Lines(Path.Combine(parallelDir, "validation.jsonl")), Is.Not.Empty);
        using (var weights = SafetensorsFile.Open(Path.Combine(parallelDir, "checkpoints", CheckpointStore.Name(3), "model.safetensors")))
        using (var reference = SafetensorsFile.Open(Path.Combine(singleDir, "checkpoints", CheckpointStore.Name(3), "model.safetensors")))
            MpiStepTests.AssertClose(weights, reference, "weight after three updates");

        // The 2-rank run's second checkpoint, resumed by one process into its own folder: it says the world changed and
        // its last step is the single run's.
        string resumed = Path.Combine(_dir, "resumed");
        CopyTree(parallelDir, resumed);
        string config = WriteConfig("resumed", steps: 3);
        var checkpoint = Path.Combine(resumed, "checkpoints", CheckpointStore.Name(2));
        Assert.That(TrainerState.Load(checkpoint).WorldSize, Is.EqualTo(2));
        var console = new StringWriter();
        var previous = Console.Out;
        Console.SetOut(console);
        try
        {
            Assert.That(TrainCommand.Run(config, checkpoint), Is.Zero);
        }
        finally
        {
            Console.SetOut(previous);
        }
        Assert.That(console.ToString(), Does.Contain("was saved by a run of 2 ranks, this one has 1"));
        AssertSameLog(Path.Combine(resumed, "metrics.jsonl"), Path.Combine(singleDir, "metrics.jsonl"));
    }

    private static void CopyTree(string from, string to)
    {
        foreach (string dir in Directory.GetDirectories(from, "*", SearchOption.AllDirectories)) Directory.CreateDirectory(dir.Replace(from, to));
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from, "*", SearchOption.AllDirectories)) File.Copy(file, file.Replace(from, to));
    }

    /// <summary>
    /// Ranks that read different configs or data (each reads its own disk) stop before the first step, naming what
    /// differs, instead of training on other data unnoticed: rank 1 reads a config whose training file lacks a line.
    /// </summary>
    [Test]
    public async Task RanksThatReadDifferentDataStopBeforeTheFirstStep()
    {
        string same = WriteConfig("agree0", steps: 1);
        string other = Path.Combine(_dir, "agree1.json");
        string fewer = Path.Combine(_dir, "train-fewer.jsonl");
        File.WriteAllLines(fewer, File.ReadLines(Path.Combine(_dir, "train.jsonl")).Skip(1));
        File.WriteAllText(other, File.ReadAllText(same).Replace(Path.Combine(_dir, "train.jsonl"), fewer));
        string script = $"exec dotnet '{MpiWorldTests.Or1}' train --config '{_dir}/agree'$OMPI_COMM_WORLD_RANK'.json'";
        var (code, output, error) = await ChildProcess.RunAsync(MpiWorldTests.RequireMpirun(),
            ["--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader", "-np", "2", "sh", "-c", script], TimeSpan.FromMinutes(4),
            environment: new Dictionary<string, string> { ["TERM"] = "dumb" });
        TestContext.Out.WriteLine(output + error);
        Assert.That(code, Is.Not.Zero);
        Assert.That(error, Does.Contain("the ranks do not agree on the config, the training data:").And.Not.Contain("the model's weights"));
        Assert.That(File.Exists(Path.Combine(_dir, "agree0", "metrics.jsonl")), Is.False, "no step ran");
    }

    /// <summary>
    /// A rank that fails (rank 0 cannot write its checkpoint: a file stands where the checkpoints folder goes) says so,
    /// naming itself, and aborts the world: rank 1, already waiting in the next step's collectives, stops too instead of
    /// waiting forever.
    /// </summary>
    [Test]
    public async Task ARankThatFailsStopsEveryRankNamingItself()
    {
        string config = WriteConfig("failing", steps: 3);
        string run = Path.Combine(_dir, "failing");
        Directory.CreateDirectory(run);
        File.WriteAllText(Path.Combine(run, "checkpoints"), "not a folder");
        var timer = Stopwatch.StartNew();
        var (code, output, error) = await Mpirun(2, "train", "--config", config);
        TestContext.Out.WriteLine(output + error);
        Assert.That(code, Is.Not.Zero);
        Assert.That(error, Does.Contain("or1: rank 0 of 2 stops the run:").And.Contain("checkpoints"), "the failing rank names itself and the problem");
        Assert.That(timer.Elapsed, Is.LessThan(TimeSpan.FromMinutes(3)), "rank 1 did not wait forever");
    }

    /// <summary>
    /// Rank 1 is killed (SIGKILL) once the run's first checkpoint exists: every rank stops within the test's time, mpirun
    /// names rank 1, and the newest checkpoint is complete and loads (weights, optimizer moments, trainer state).
    /// </summary>
    [Test]
    public async Task ARankThatDiesStopsEveryRankAndLeavesTheLastCheckpointValid()
    {
        string config = WriteConfig("killed", steps: 20);
        string run = Path.Combine(_dir, "killed"), latest = Path.Combine(run, "checkpoints", "latest");
        string script = $"if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then (while [ ! -e '{latest}' ]; do sleep 0.05; done; kill -9 $$) & fi; " +
                        $"exec dotnet '{MpiWorldTests.Or1}' train --config '{config}'";
        var timer = Stopwatch.StartNew();
        var (code, output, error) = await ChildProcess.RunAsync(MpiWorldTests.RequireMpirun(),
            ["--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader", "-np", "2", "sh", "-c", script], TimeSpan.FromMinutes(4),
            environment: new Dictionary<string, string> { ["TERM"] = "dumb" });
        TestContext.Out.WriteLine(output + error);
        Assert.That(code, Is.Not.Zero, "the run cannot succeed without rank 1");
        Assert.That(output + error, Does.Contain("rank 1").And.Contain("signal 9"), "mpirun names the rank that died and how");
        Assert.That(output, Does.Not.Contain("train: done"));
        Assert.That(timer.Elapsed, Is.LessThan(TimeSpan.FromMinutes(3)), "rank 0 stopped instead of waiting for rank 1");

        string? checkpoint = new CheckpointStore(run).Latest();
        Assert.That(checkpoint, Is.Not.Null, "the first checkpoint was complete before rank 1 died");
        var state = TrainerState.Load(checkpoint!);
        Assert.That(state.GlobalStep, Is.GreaterThanOrEqualTo(1));
        using var backend = new CpuBackend(); // no thread count: the pool is the process's, and other tests share it
        using var model = Qwen2ModelFiles.Load(backend, checkpoint!, Precision.Fp32, master: true);
        using var optimizer = new AdamWOptimizer(model);
        Assert.DoesNotThrow(() => OptimizerCheckpoint.Load(checkpoint!, optimizer), "the optimizer's moments are whole in the checkpoint");
        Assert.That(model.Weights.Named.All(p => p.Tensor.AsSpan<float>().ToArray().All(float.IsFinite)));
    }
}

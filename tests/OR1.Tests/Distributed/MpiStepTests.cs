using System.Text.Json;
using OR1.Grpo.Training;
using OR1.Model;
using OR1.Model.Checkpoints;
using OR1.Native.Cpu;
using OR1.Runner.Commands;
using OR1.Tests.Model;
using OR1.Tests.Support;

namespace OR1.Tests.Distributed;

/// <summary>
/// `mpirun -np N or1 step --save-grads` on the Cpu backend: every rank reads the whole rollouts file, trains the kept
/// groups dealt to it, and the gradients are all-reduced before the clip, so the clipped gradients and the updated weights
/// equal one process's on the whole file (relative difference at most 1e-5), the ranks' weights agree (checked by the
/// command across ranks), and metrics.json says world_size N. N = 2, and 3 (a world that divides neither the groups nor
/// the parameters).
/// </summary>
public sealed class MpiStepTests
{
    private string _dir = null!;

    [SetUp]
    public void Create() => _dir = Directory.CreateTempSubdirectory("or1-mpi-step-").FullName;

    [TearDown]
    public void Clean() => Directory.Delete(_dir, recursive: true);

    private string WriteModel() => TinyModels.SaveCheckpoint(_dir, seed: 31);

    /// <summary>Seven groups of 2-4 responses: five with mixed rewards (kept), two all-equal (dropped).</summary>
    private string WriteRollouts()
    {
        var random = new Random(5);
        var lines = new List<string>();
        for (int g = 0; g < 7; g++)
        {
            int[] prompt = Enumerable.Range(0, 2 + g % 3).Select(_ => random.Next(1, 37)).ToArray();
            int responses = 2 + g % 3;
            for (int i = 0; i < responses; i++)
            {
                int[] response = Enumerable.Range(0, 1 + random.Next(6)).Select(_ => random.Next(1, 37)).ToArray();
                double reward = g is 2 or 5 ? 1 : (i + g) % 2;
                lines.Add(JsonSerializer.Serialize(new { group = $"g{g}", prompt_tokens = prompt, response_tokens = response, reward, truncated = false }));
            }
        }
        string path = Path.Combine(_dir, "rollouts.jsonl");
        File.WriteAllLines(path, lines);
        return path;
    }

    private static readonly string[] StepOptions = ["--lr", "1e-3", "--entropy-coef", "0.004", "--max-grad-norm", "0.05", "--save-grads"];

    /// <summary>Every tensor within a relative 1e-5 of the reference (of its largest value); a failure lists every tensor that is not.</summary>
    internal static void AssertClose(SafetensorsFile actual, SafetensorsFile expected, string what)
    {
        var failures = new List<string>();
        foreach (string name in expected.Tensors.Keys)
        {
            float[] a = actual.ReadAsFloat32(name), e = expected.ReadAsFloat32(name);
            double scale = Math.Max(1e-12, e.Max(v => Math.Abs((double)v)));
            double worst = a.Zip(e, (x, y) => Math.Abs((double)x - y)).Max();
            if (worst / scale > 1e-5) failures.Add($"'{name}': max |difference| {worst:G3} against a largest value of {scale:G3}");
        }
        Assert.That(failures, Is.Empty, $"{what}s beyond a relative 1e-5:\n  {string.Join("\n  ", failures)}");
    }

    /// <summary>
    /// The sharded optimizer (ZeRO-1, the default under mpirun: gradients reduce-scattered, the clip's norm from the slices'
    /// partial sums, the updated slices all-gathered) takes the unsharded step (relative difference at most 1e-5: the sums
    /// run in another order), and a rank holds 1/N of the Adam moments (rank 0's slice of the flat layout, counted from
    /// its allocations) where the unsharded run holds them all.
    /// </summary>
    [TestCase(2, "cpu", "fp32")]
    [TestCase(3, "cpu", "fp32")]
    [TestCase(2, "emu", "bf16")]
    [TestCase(2, "ilgpu-cpu", "fp32")] // device memory the host cannot read: the collectives stage it through the host
    public async Task TheShardedOptimizerTakesTheSameStepWithItsShareOfTheState(int ranks, string device, string precision)
    {
        if (device == "emu") EmuOrIgnore.Open(() => new OR1.Native.Emu.EmuBackend()).Dispose();
        string mpirun = MpiWorldTests.RequireMpirun();
        string model = WriteModel(), rollouts = WriteRollouts();
        string sharded = Path.Combine(_dir, "sharded"), whole = Path.Combine(_dir, "whole");
        foreach (var (output, shard) in new[] { (sharded, "true"), (whole, "false") })
        {
            var (code, _, error) = await ChildProcess.RunAsync(mpirun,
                MpiWorldTests.MpirunArguments(ranks, ["step", "--model", model, "--rollouts", rollouts, "--out", output, "--shard-optimizer", shard, "--device", device, "--precision", precision, .. StepOptions]),
                TimeSpan.FromMinutes(4), environment: new Dictionary<string, string> { ["TERM"] = "dumb" });
            Assert.That(code, Is.Zero, error);
        }
        using (var a = SafetensorsFile.Open(Path.Combine(sharded, "model.safetensors")))
        using (var b = SafetensorsFile.Open(Path.Combine(whole, "model.safetensors")))
            AssertClose(a, b, "sharded against unsharded weight");
        using (var a = SafetensorsFile.Open(Path.Combine(sharded, "grads.safetensors")))
        using (var b = SafetensorsFile.Open(Path.Combine(whole, "grads.safetensors")))
            AssertClose(a, b, "sharded against unsharded clipped gradient");
        var config = TinyModels.Config(tied: false);
        long parameters = Qwen2Checkpoint.ParameterShapes(config).Sum(p => p.Shape.Aggregate(1L, (x, y) => x * y));
        using var backend = new CpuBackend();
        using var layout = new Qwen2Weights(backend, config, flatMultiple: ranks * Qwen2Weights.FlatAlignment);
        long State(string output) => JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "metrics.json"))).RootElement.GetProperty("optimizer_state_bytes").GetInt64();
        // Both Adam moments, and in mixed precision the fp32 master once it is the optimizer's slice (unsharded, the
        // master is the model's and counted there).
        int perParameter = precision == "bf16" ? 3 : 2;
        Assert.That(State(whole), Is.EqualTo(2 * sizeof(float) * parameters), "unsharded: both moments of every parameter");
        Assert.That(State(sharded), Is.EqualTo(perParameter * sizeof(float) * (layout.Flat!.ElementCount / ranks)), "sharded: rank 0's slice of the flat layout");
        // 1/N of the state, plus the layout's alignment gaps (under 64 elements a tensor) and its tail (under 64 a rank):
        // a lot for this 5,000-parameter model, a hundred-thousandth of a 1.5B one's.
        long gaps = (long)layout.Named.Count * (Qwen2Weights.FlatAlignment - 1) + ranks * Qwen2Weights.FlatAlignment;
        Assert.That(State(sharded), Is.InRange(perParameter * sizeof(float) * parameters / ranks, perParameter * sizeof(float) * ((parameters + gaps) / ranks + 1)),
            "sharded: 1/N of the unsharded state");
    }

    /// <summary>
    /// The gradients summed during the backward (small buckets: dozens per rank, each started as the backward reports it
    /// final, by a thread of its own) give the sums of the same buckets after the backward bit for bit: the clipped
    /// gradients and the updated weights, sharded or not; the ranks say which way they summed.
    /// </summary>
    [TestCase(2, "true")]
    [TestCase(2, "false")]
    [TestCase(3, "true")]
    public async Task SummingDuringTheBackwardGivesTheSumAfterItBitForBit(int ranks, string shard)
    {
        string mpirun = MpiWorldTests.RequireMpirun();
        string model = WriteModel(), rollouts = WriteRollouts();
        string overlapped = Path.Combine(_dir, "overlapped"), after = Path.Combine(_dir, "after");
        foreach (var (output, overlap, words) in new[] { (overlapped, "true", "overlapped with the backward by a thread of their own"), (after, "false", "after the backward") })
        {
            var (code, _, error) = await ChildProcess.RunAsync(mpirun,
                MpiWorldTests.MpirunArguments(ranks, ["step", "--model", model, "--rollouts", rollouts, "--out", output, "--shard-optimizer", shard,
                    "--overlap-grad-reduce", overlap, "--grad-bucket-elements", "64", .. StepOptions]),
                TimeSpan.FromMinutes(4), environment: new Dictionary<string, string> { ["TERM"] = "dumb" });
            TestContext.Out.WriteLine(error);
            Assert.That(code, Is.Zero, error);
            for (int r = 0; r < ranks; r++) Assert.That(error, Does.Contain($"rank {r} of {ranks}: the ranks' weights agree (gradients host (in place), ").And.Contain(words));
        }
        foreach (string file in new[] { "model.safetensors", "grads.safetensors" })
        {
            using var a = SafetensorsFile.Open(Path.Combine(overlapped, file));
            using var b = SafetensorsFile.Open(Path.Combine(after, file));
            foreach (string name in b.Tensors.Keys)
                Assert.That(a.ReadAsFloat32(name), Is.EqualTo(b.ReadAsFloat32(name)), $"{file}: '{name}', summed during against after the backward");
        }
    }

    [TestCase(2)]
    [TestCase(3)]
    public async Task RanksTakeTheStepOfOneProcess(int ranks)
    {
        string mpirun = MpiWorldTests.RequireMpirun();
        string model = WriteModel(), rollouts = WriteRollouts();
        string single = Path.Combine(_dir, "single"), parallel = Path.Combine(_dir, $"np{ranks}");
        var options = new MagicOptions { LearningRate = 1e-3, FixedEntropyCoefficient = 0.004, MaxGradNorm = 0.05 };
        Assert.That(StepCommand.Run(model, rollouts, single, options, saveGrads: true, "cpu"), Is.Zero);

        var (code, _, error) = await ChildProcess.RunAsync(mpirun,
            MpiWorldTests.MpirunArguments(ranks, ["step", "--model", model, "--rollouts", rollouts, "--out", parallel, .. StepOptions]),
            TimeSpan.FromMinutes(4), environment: new Dictionary<string, string> { ["TERM"] = "dumb" });
        TestContext.Out.WriteLine(error);
        Assert.That(code, Is.Zero, error);
        for (int r = 0; r < ranks; r++) Assert.That(error, Does.Contain($"rank {r} of {ranks}: the ranks' weights agree"));
        Assert.That(error, Does.Contain("after the backward)"), "in host memory the gradients are summed after the backward unless asked");

        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(parallel, "metrics.json")));
        using var reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(single, "metrics.json")));
        Assert.That(metrics.RootElement.GetProperty("world_size").GetInt32(), Is.EqualTo(ranks));
        Assert.That(reference.RootElement.GetProperty("world_size").GetInt32(), Is.EqualTo(1));
        foreach (string field in new[] { "kept_groups", "kept_tokens", "groups" })
            Assert.That(metrics.RootElement.GetProperty(field).GetInt32(), Is.EqualTo(reference.RootElement.GetProperty(field).GetInt32()), field);
        foreach (string field in new[] { "grad_norm", "policy_loss", "entropy", "reward_mean" })
        {
            double actual = metrics.RootElement.GetProperty(field).GetDouble(), expected = reference.RootElement.GetProperty(field).GetDouble();
            Assert.That(Math.Abs(actual - expected), Is.LessThanOrEqualTo(1e-5 * Math.Abs(expected) + 1e-9), $"{field} of {ranks} ranks ({actual}) vs one process ({expected})");
        }
        Assert.That(metrics.RootElement.GetProperty("kept_groups").GetInt32(), Is.EqualTo(5), "the two all-equal groups are dropped");

        using var grads = SafetensorsFile.Open(Path.Combine(parallel, "grads.safetensors"));
        using var gradsReference = SafetensorsFile.Open(Path.Combine(single, "grads.safetensors"));
        AssertClose(grads, gradsReference, "clipped gradient");
        using var weights = SafetensorsFile.Open(Path.Combine(parallel, "model.safetensors"));
        using var weightsReference = SafetensorsFile.Open(Path.Combine(single, "model.safetensors"));
        AssertClose(weights, weightsReference, "updated weight");
    }
}

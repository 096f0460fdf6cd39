using System.Text.Json;
using OR1.Runner.Cli;
using OR1.Runner.Commands;

namespace OR1.Tests.Runner;

/// <summary>
/// <c>or1 plan</c>: the table and the JSON object (every field the issue names), exit code 0 whether the plan fits or not,
/// a model folder's config.json read without weights, and bad input refused naming the option.
/// </summary>
public sealed class PlanCommandTests
{
    private static (int Code, string Output) Run(PlanCommand.Arguments arguments)
    {
        var output = new StringWriter();
        int code = PlanCommand.Run(arguments, output);
        return (code, output.ToString());
    }

    [Test]
    public void TheJsonHasEveryFieldAndTheExitCodeIsZeroEitherWay()
    {
        string[] fields = ["weights_bytes", "master_weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "kv_cache_bytes",
            "scratch_bytes", "total_bytes", "device_bytes", "fits", "micro_batch_tokens", "max_micro_batch_tokens", "max_decode_batch"];
        foreach (bool recompute in new[] { true, false })
        {
            var (code, output) = Run(new PlanCommand.Arguments(null, "1.5b", "h200", Recompute: recompute, Context: 32768, Json: true));
            Assert.That(code, Is.Zero, "a plan is not an error");
            using var json = JsonDocument.Parse(output);
            var root = json.RootElement;
            foreach (string field in fields) Assert.That(root.TryGetProperty(field, out _), Is.True, $"--json has '{field}'");
            Assert.That(root.GetProperty("fits").GetBoolean(), Is.EqualTo(recompute), "the 1.5B at 32K fits an H200 in bf16 with recomputation only");
            long sum = new[] { "weights_bytes", "master_weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "kv_cache_bytes", "scratch_bytes" }
                .Sum(f => root.GetProperty(f).GetInt64());
            Assert.That(root.GetProperty("total_bytes").GetInt64(), Is.EqualTo(sum), "the total is the sum of the parts");
            Assert.That(root.GetProperty("precision").GetString(), Is.EqualTo("bf16"), "bf16 is the default on a GPU");
        }
    }

    [Test]
    public void TheTableNamesEachPartAndWhatWouldMakeItFit()
    {
        var (code, output) = Run(new PlanCommand.Arguments(null, "7b", "h100", Context: 16384));
        TestContext.Out.WriteLine(output);
        Assert.That(code, Is.Zero);
        Assert.That(output, Does.Contain("DeepSeek-R1-Distill-Qwen-7B on h100").And.Contain("Adam moments").And.Contain("KV cache (rollout)")
            .And.Contain("attention").And.Contain("MLP").And.Contain("LM head chunk").And.Contain("DOES NOT FIT").And.Contain("needs "));
    }

    /// <summary>
    /// The seed's 7B on H100s with 8 ranks: the optimizer state whole on every rank (91 GB of fp32 master and moments,
    /// 122 GB with the fp32 gradients) does not fit, sharded it does; the table and the JSON show both, and the sharded state is 1/8 of the whole.
    /// </summary>
    [Test]
    public void RanksShowTheShardedPlanBesideTheUnshardedOne()
    {
        var (code, table) = Run(new PlanCommand.Arguments(null, "7b", "h100", Recompute: true, Context: 16384, Ranks: 8));
        TestContext.Out.WriteLine(table);
        Assert.That(code, Is.Zero);
        Assert.That(table, Does.Contain("per rank of 8: optimizer state sharded (ZeRO-1, the default)").And.Contain("(fits)")
            .And.Contain("whole on every rank (--shard-optimizer false)").And.Contain("(DOES NOT FIT)"));
        var (_, output) = Run(new PlanCommand.Arguments(null, "7b", "h100", Recompute: true, Context: 16384, Ranks: 8, Json: true));
        using var json = JsonDocument.Parse(output);
        var (sharded, whole) = (json.RootElement, json.RootElement.GetProperty("unsharded"));
        Assert.That(sharded.GetProperty("fits").GetBoolean(), Is.True);
        Assert.That(whole.GetProperty("fits").GetBoolean(), Is.False);
        long state(JsonElement e) => e.GetProperty("master_weights_bytes").GetInt64() + e.GetProperty("optimizer_bytes").GetInt64();
        Assert.That(state(sharded), Is.EqualTo(state(whole) / 8).Within(16), "master and moments split eight ways");
        Assert.That(state(whole), Is.EqualTo(12 * 7_615_616_512L), "12 bytes a parameter: fp32 master and two fp32 moments");
        Assert.That(state(whole) + whole.GetProperty("gradients_bytes").GetInt64(), Is.EqualTo(16 * 7_615_616_512L), "122 GB with the fp32 gradients");
        var (_, single) = Run(new PlanCommand.Arguments(null, "7b", "h100", Json: true));
        Assert.That(JsonDocument.Parse(single).RootElement.TryGetProperty("unsharded", out _), Is.False, "one rank has nothing to compare");
    }

    [Test]
    public void AModelFolderIsPlannedFromItsConfigAlone()
    {
        string folder = Path.Combine(Path.GetTempPath(), $"or1-plan-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            File.WriteAllText(Path.Combine(folder, "config.json"), """
                {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300, "rms_norm_eps": 1e-6, "rope_theta": 10000,
                 "max_position_embeddings": 2048, "tie_word_embeddings": true}
                """);
            var (code, output) = Run(new PlanCommand.Arguments(folder, null, "cpu", Context: 1024, Samples: 8, Json: true));
            Assert.That(code, Is.Zero);
            using var json = JsonDocument.Parse(output);
            Assert.That(json.RootElement.GetProperty("fits").GetBoolean(), Is.True);
            Assert.That(json.RootElement.GetProperty("precision").GetString(), Is.EqualTo("fp32"), "fp32 on the cpu device");
            Assert.That(json.RootElement.GetProperty("parameters").GetInt64(), Is.EqualTo(300 * 64 + 2 * (64 + 64 * 64 + 64 + 2 * (32 * 64 + 32) + 64 * 64 + 64 + 3 * 176 * 64) + 64));
        }
        finally { Directory.Delete(folder, recursive: true); }
    }

    [Test]
    public void BadInputIsRefusedNamingTheOption()
    {
        Assert.That(() => Run(new PlanCommand.Arguments(null, null)), Throws.InstanceOf<CliException>().With.Message.Contains("exactly one of --model DIR or --shape"));
        Assert.That(() => Run(new PlanCommand.Arguments("x", "7b")), Throws.InstanceOf<CliException>().With.Message.Contains("exactly one"));
        Assert.That(() => Run(new PlanCommand.Arguments(null, "3b")), Throws.InstanceOf<CliException>().With.Message.Contains("--shape '3b'"));
        Assert.That(() => Run(new PlanCommand.Arguments(null, "7b", "tpu")), Throws.InstanceOf<CliException>().With.Message.Contains("--device 'tpu'"));
        Assert.That(() => Run(new PlanCommand.Arguments(null, "7b", Context: 0)), Throws.InstanceOf<CliException>().With.Message.Contains("--context is 0"));
        Assert.That(() => Run(new PlanCommand.Arguments(null, "7b", "cpu", OR1.Model.Precision.Bf16)), Throws.InstanceOf<CliException>().With.Message.Contains("bf16"));
        Assert.That(() => Run(new PlanCommand.Arguments("/nonexistent-or1-model", null)), Throws.InstanceOf<CliException>().With.Message.Contains("no config.json"));
    }
}

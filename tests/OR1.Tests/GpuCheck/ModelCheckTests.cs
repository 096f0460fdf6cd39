using System.Text.Json;
using OR1.Model;
using OR1.Native;
using OR1.Native.Kernels;
using OR1.Tests.Support;

namespace OR1.Tests.GpuCheck;

/// <summary>
/// The GPU check's whole-model phase runs on the emulator at a tiny shape, so the code a lent GPU runs once has run
/// here first: a step and a generation complete, the records carry their figures, and the proof of path shows the
/// emulator's GEMMs as builtin (on a GPU the same counter must read 0).
/// </summary>
public sealed class ModelCheckTests
{
    [TestCase(Precision.Fp32)]
    [TestCase(Precision.Bf16)]
    public void TheWholeModelPhaseRunsAndRecordsItsFigures(Precision precision)
    {
        using var backend = EmuOrIgnore.Open(() => (KernelBackend)Backends.Create("emu"));
        var config = ModelCheck.Qwen25_1_5B with
        {
            HiddenSize = 64, IntermediateSize = 96, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, VocabSize = 300,
        };
        var plan = new ModelCheck.Plan(config, Groups: 2, GroupSize: 2, PromptLength: 5, ResponseLength: 7, MicroBatchTokens: 24,
            GenerateBatch: 3, GeneratePrompt: 4, GenerateTokens: 6);
        var records = ModelCheck.Run(backend, plan, precision, TestContext.Out.WriteLine);

        Assert.That(records.Select(r => r.Key), Is.EqualTo(new[] { $"model/train_step/{precision.Name()}", $"model/generate/{precision.Name()}" }));
        foreach (var r in records)
        {
            Assert.That(r.TokensPerS, Is.GreaterThan(0), r.Key);
            Assert.That(r.PeakBytes, Is.GreaterThan(0), r.Key);
            Assert.That(r.Counters!["launches"], Is.GreaterThan(0), r.Key);
            Assert.That(r.Counters["builtin_gemms"], Is.EqualTo(r.Counters["gemms"]), "the emulator runs every GEMM on the builtin kernel");
        }
        Assert.That(records[0].Counters!["allocations"], Is.Zero, "the timed step follows a warm-up: nothing is allocated");
        // The engine's log-probs against the trainer's: every sampled token compared, within the goal of 1e-3 on average.
        Assert.That(records[1].LogprobMismatchTokens, Is.EqualTo(plan.GenerateBatch * plan.GenerateTokens));
        Assert.That(records[1].LogprobMismatchMean, Is.LessThanOrEqualTo(1e-3));
        Assert.That(records[1].LogprobMismatchMax, Is.GreaterThanOrEqualTo(records[1].LogprobMismatchMean));
        var path = Path.Combine(Path.GetTempPath(), $"or1-model-check-{Guid.NewGuid():N}.json");
        try
        {
            GpuCheckRecord.Save(path, records);
            using var json = JsonDocument.Parse(File.ReadAllText(path));
            Assert.That(json.RootElement[0].GetProperty("tokens_per_s").GetDouble(), Is.GreaterThan(0));
            Assert.That(json.RootElement[0].GetProperty("side").GetString(), Is.EqualTo("ours"));
            Assert.That(json.RootElement[0].TryGetProperty("gbps", out _), Is.False, "unused figures are left out");
        }
        finally
        {
            File.Delete(path);
        }
    }
}

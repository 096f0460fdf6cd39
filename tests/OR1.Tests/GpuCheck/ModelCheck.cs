using System.Diagnostics;
using OR1.Grpo.Training;
using OR1.Model;
using OR1.Model.Generation;
using OR1.Native;
using OR1.Native.Kernels;

namespace OR1.Tests.GpuCheck;

/// <summary>
/// The GPU check's whole-model phase, our side (bench/compare/gpu_model.py is PyTorch's): one MAGIC training step in
/// bf16 at the Qwen2.5-1.5B shape with random weights over 16K tokens, and the generation of 64 x 1K tokens, each
/// after a warm-up run: tokens/s, the device memory at the step's peak (weights, fp32 master copy, AdamW moments,
/// gradients, activations, scratch), and the proof of path: launches, GEMMs and how many of them did not run on
/// cuBLAS, synchronisations per step. Written for any kernel backend, so CI runs it on the emulator at a tiny shape.
/// </summary>
public static class ModelCheck
{
    /// <summary>The shape and sizes of one run: the model, the training batch and the generation.</summary>
    public sealed record Plan(Qwen2Config Config, int Groups, int GroupSize, int PromptLength, int ResponseLength, int MicroBatchTokens,
        int GenerateBatch, int GeneratePrompt, int GenerateTokens, int MismatchSamples = 8)
    {
        public int StepTokens => Groups * GroupSize * (PromptLength + ResponseLength);
    }

    public static Qwen2Config Qwen25_1_5B => new()
    {
        HiddenSize = 1536,
        IntermediateSize = 8960,
        NumHiddenLayers = 28,
        NumAttentionHeads = 12,
        NumKeyValueHeads = 2,
        RmsNormEps = 1e-6,
        RopeTheta = 1e6,
        VocabSize = 151936,
        MaxPositionEmbeddings = 32768,
        TieWordEmbeddings = true,
    };

    /// <summary>The check's plan: 16 sequences of 1024 tokens (4 groups of 4), two micro-batches of 8K; 64 x 1K generated.</summary>
    public static Plan Full => new(Qwen25_1_5B, 4, 4, 256, 768, 8192, 64, 32, 1024);

    /// <summary>A quarter of the tokens, for --quick.</summary>
    public static Plan Quick => Full with { Groups = 1, GenerateTokens = 256 };

    public static IReadOnlyList<GpuCheckRecord> Run(KernelBackend backend, Plan plan, Precision precision, Action<string> log)
    {
        var records = new List<GpuCheckRecord>();
        var config = plan.Config;
        string shape = $"hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, {config.NumAttentionHeads}/{config.NumKeyValueHeads} heads, " +
                       $"intermediate {config.IntermediateSize}, vocab {config.VocabSize}";
        using var model = new Qwen2Model(backend, config, precision, master: precision == Precision.Bf16);
        model.InitializeRandom(1);

        // ---- one MAGIC step
        var samples = Samples(plan, config.VocabSize);
        using (var trainer = new MagicTrainer(model, new MagicOptions { LearningRate = 1e-7, FixedEntropyCoefficient = 1e-3, MicroBatchTokens = plan.MicroBatchTokens }))
        {
            var warm = Stopwatch.StartNew();
            trainer.Step(samples);
            backend.Synchronize();
            log($"model check: warm-up step {warm.Elapsed.TotalSeconds:F1} s");
            backend.ResetPeakDeviceBytes();
            var before = backend.Counters;
            var timer = Stopwatch.StartNew();
            var metrics = trainer.Step(samples);
            backend.Synchronize();
            double seconds = timer.Elapsed.TotalSeconds;
            var used = backend.Counters - before;
            records.Add(new GpuCheckRecord
            {
                Key = $"model/train_step/{precision.Name()}",
                Side = "ours",
                Name = "MAGIC training step",
                Shape = $"{shape}; {plan.StepTokens} tokens ({plan.Groups * plan.GroupSize} x {plan.PromptLength + plan.ResponseLength}), micro-batches of {plan.MicroBatchTokens}",
                Dtype = precision.Name(),
                Ms = seconds * 1e3,
                TokensPerS = plan.StepTokens / seconds,
                PeakBytes = backend.DeviceBytes.Peak,
                Implementation = $"log-prob tiles {metrics.LogProbRowBlock} x {metrics.LogProbVocabChunk}",
                Counters = CounterTable(used),
            });
            log($"model check: step {seconds:F2} s, {plan.StepTokens / seconds:F0} tokens/s, peak {backend.DeviceBytes.Peak / 1073741824.0:F2} GiB, {used}");
        }

        // ---- generation
        int maxLength = plan.GeneratePrompt + plan.GenerateTokens;
        var random = new Random(7);
        var prompts = Enumerable.Range(0, plan.GenerateBatch)
            .Select(_ => (IReadOnlyList<int>)Enumerable.Range(0, plan.GeneratePrompt).Select(_ => random.Next(config.VocabSize)).ToArray()).ToArray();
        var options = new GenerationOptions(plan.GenerateTokens, new SamplingOptions(1f, 0.95f), [], Seed: 3);
        IReadOnlyList<GeneratedSample> result;
        GpuCheckRecord generation;
        using (var generator = new Qwen2Generator(model, plan.GenerateBatch, maxLength))
        {
            generator.Generate(prompts, options with { MaxNewTokens = Math.Min(8, plan.GenerateTokens) }); // warm-up
            backend.ResetPeakDeviceBytes();
            var before = backend.Counters;
            var timer = Stopwatch.StartNew();
            result = generator.Generate(prompts, options);
            double seconds = timer.Elapsed.TotalSeconds;
            long tokens = result.Sum(r => (long)r.Tokens.Count);
            var used = backend.Counters - before;
            var counters = CounterTable(used);
            counters["graph_captures"] = generator.LastStats.DecodeGraphCaptures;
            counters["graph_replays"] = generator.LastStats.DecodeGraphReplays;
            counters["decode_steps"] = generator.LastStats.DecodeSteps;
            counters["decode_runs"] = generator.LastStats.DecodeRuns; // waits for the device: DecodeStepsPerSync steps per run at most
            generation = new GpuCheckRecord
            {
                Key = $"model/generate/{precision.Name()}",
                Side = "ours",
                Name = "generation",
                Shape = $"{shape}; batch {plan.GenerateBatch}, prompt {plan.GeneratePrompt}, {plan.GenerateTokens} new tokens, top-p 0.95",
                Dtype = precision.Name(),
                Ms = seconds * 1e3,
                TokensPerS = tokens / seconds,
                PeakBytes = backend.DeviceBytes.Peak,
                Counters = counters,
                Implementation = (generator.GraphFailure is { } failure ? $"decode graphs failed, ops launched: {failure}" : "decode steps as device graphs") +
                                 $"; up to {generator.DecodeStepsPerSync} steps per wait, stop rules on the device",
            };
            log($"model check: generated {tokens} tokens in {seconds:F2} s, {tokens / seconds:F0} tokens/s, {used}" +
                (generator.GraphFailure is { } why ? $"; decode graphs failed: {why}" : $"; {generator.LastStats.DecodeGraphReplays} steps replayed from graphs"));
        }
        // On-policy: the engine's log-prob of each sampled token against the trainer's forward over the whole sequence
        // (after the generator is gone, so its KV cache's memory is free). Bit-identical on the Cpu backend; the goal here
        // is a mean |difference| of at most 1e-3 (the field's rollout engines read about 0.011 against their trainers).
        var (mean, max, compared) = LogProbMismatch(model, prompts, result, plan.MismatchSamples);
        records.Add(generation with { LogprobMismatchMean = mean, LogprobMismatchMax = max, LogprobMismatchTokens = compared });
        log($"model check: engine vs trainer log-probs over {compared} tokens: mean |diff| {mean:G3}, max {max:G3}");
        return records;
    }

    /// <summary>
    /// Mean and largest |engine log-prob - trainer log-prob| over the sampled tokens of the first <paramref name="samples"/>
    /// samples, the trainer's being a forward over prompt + response and the fused LM-head log-prob at T = 1, one sample
    /// at a time in an inference arena.
    /// </summary>
    public static (double Mean, double Max, long Tokens) LogProbMismatch(Qwen2Model model, IReadOnlyList<IReadOnlyList<int>> prompts,
        IReadOnlyList<GeneratedSample> generated, int samples)
    {
        var backend = model.Backend;
        double sum = 0, max = 0;
        long count = 0;
        foreach (var sample in generated.Take(samples))
        {
            var prompt = prompts[sample.PromptIndex];
            int[] sequence = prompt.Concat(sample.Tokens).ToArray();
            int n = sequence.Length, first = prompt.Count - 1;
            var targets = new int[n];
            for (int i = 0; i + 1 < n; i++) targets[i] = sequence[i + 1];
            using var batch = PackedBatch.Create(backend, [sequence]);
            using var act = Qwen2Activations.ForInference(backend, model.Config, n, model.Storage);
            using var targetTensor = backend.Allocate(DType.Int32, new TensorShape(n));
            using var logProbs = backend.Allocate(DType.Float32, new TensorShape(n));
            using var entropy = backend.Allocate(DType.Float32, new TensorShape(n));
            backend.Upload<int>(targets, targetTensor);
            model.Forward(batch, act);
            model.LogProbs(act, targetTensor, 1f, logProbs, entropy);
            var trainer = new float[n];
            backend.Download<float>(logProbs, trainer);
            for (int j = 0; j < sample.Tokens.Count; j++)
            {
                double diff = Math.Abs((double)sample.LogProbs[j] - trainer[first + j]);
                sum += diff;
                max = Math.Max(max, diff);
                count++;
            }
        }
        return (count > 0 ? sum / count : 0, max, count);
    }

    /// <summary>The step's rollouts: random tokens, rewards 1, 0, 1, 0 in every group (all groups kept).</summary>
    private static RolloutSample[] Samples(Plan plan, int vocab)
    {
        var random = new Random(3);
        var samples = new List<RolloutSample>();
        for (int g = 0; g < plan.Groups; g++)
        {
            int[] prompt = Enumerable.Range(0, plan.PromptLength).Select(_ => random.Next(vocab)).ToArray();
            for (int s = 0; s < plan.GroupSize; s++)
                samples.Add(new RolloutSample($"g{g}", prompt, Enumerable.Range(0, plan.ResponseLength).Select(_ => random.Next(vocab)).ToArray(), s % 2, Truncated: false));
        }
        return samples.ToArray();
    }

    private static Dictionary<string, long> CounterTable(DeviceCounters c) => new()
    {
        ["launches"] = c.Launches,
        ["gemms"] = c.Gemms,
        ["builtin_gemms"] = c.BuiltinGemms,
        ["synchronizations"] = c.Synchronizations,
        ["allocations"] = c.Allocations,
        ["uploads"] = c.HostToDeviceCopies,
        ["downloads"] = c.DeviceToHostCopies,
    };
}

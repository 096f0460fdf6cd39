using System.CommandLine;
using System.Text.Json;
using OR1.Grpo.Checkpoints;
using OR1.Grpo.Training;
using OR1.Model;
using OR1.Model.Checkpoints;
using OR1.Runner.Cli;

namespace OR1.Runner.Commands;

/// <summary>
/// <c>or1 step</c>: one MAGIC update from rollouts made anywhere (vLLM, another trainer), so our update
/// can be compared with theirs number for number. The entropy bonus uses exactly --entropy-coef.
/// </summary>
public static class StepCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model directory to update", Required = true };
        var rollouts = new Option<string>("--rollouts") { Description = "JSONL: {\"group\",\"prompt_tokens\",\"response_tokens\",\"reward\",\"truncated\"[,\"old_logprobs\"]} per line (the responses of one group share its prompt)", Required = true };
        var output = new Option<string>("--out") { Description = "Directory for the updated checkpoint, metrics.json and grads.safetensors", Required = true };
        var lr = new Option<double>("--lr") { Description = "AdamW learning rate", DefaultValueFactory = _ => 1e-6 };
        var entropyCoef = new Option<double>("--entropy-coef") { Description = "Entropy bonus coefficient (alpha)", DefaultValueFactory = _ => 0 };
        var clipLow = new Option<float>("--clip-low") { Description = "eps_low", DefaultValueFactory = _ => 0.2f };
        var clipHigh = new Option<float>("--clip-high") { Description = "eps_high", DefaultValueFactory = _ => 0.2f };
        var maxGradNorm = new Option<double>("--max-grad-norm") { Description = "Global gradient-norm clip", DefaultValueFactory = _ => 1.0 };
        var temperature = new Option<float>("--temperature") { Description = "Temperature of the log-probs in the loss", DefaultValueFactory = _ => 1f };
        var saveGrads = new Option<bool>("--save-grads") { Description = "Also write the clipped gradients, named like the parameters" };
        var shardOptimizer = new Option<bool>("--shard-optimizer")
        {
            Description = "Under mpirun, keep each rank's 1/N of the optimizer state only (ZeRO-1: the Adam moments, and in bf16 the fp32 master; the same update). Default true; false keeps them whole on every rank",
            DefaultValueFactory = _ => true,
        };
        var overlap = new Option<bool?>("--overlap-grad-reduce")
        {
            Description = "Under mpirun, sum the gradients bucket by bucket during the backward (the same sums): true or false. " +
                          "Default: on a GPU with NCCL (a side stream), not in host memory (a thread that would compete with the Cpu backend's)",
        };
        var bucket = new Option<int>("--grad-bucket-elements")
        {
            Description = "Under mpirun, elements per collective of the gradients' sum (a multiple of 64; default 4,194,304: 16 MB of fp32)",
            DefaultValueFactory = _ => AdamWOptimizer.BucketElements,
        };
        var oldLogProbs = OldLogProbsOption.Create();
        var device = Devices.CreateOption();
        var precision = PrecisionOptions.CreatePrecision();
        var saveDType = PrecisionOptions.CreateSaveDType();
        var command = new Command("step", "One MAGIC update from a rollouts file")
            { model, rollouts, output, lr, entropyCoef, clipLow, clipHigh, maxGradNorm, temperature, saveGrads, shardOptimizer, overlap, bucket, oldLogProbs, device, precision, saveDType };
        command.SetAction(r => Run(r.GetValue(model)!, r.GetValue(rollouts)!, r.GetValue(output)!, new MagicOptions
        {
            LearningRate = r.GetValue(lr),
            FixedEntropyCoefficient = r.GetValue(entropyCoef),
            ClipLow = r.GetValue(clipLow),
            ClipHigh = r.GetValue(clipHigh),
            MaxGradNorm = r.GetValue(maxGradNorm),
            Temperature = r.GetValue(temperature),
            OldLogProbs = r.GetValue(oldLogProbs) ?? OldLogProbSource.Recompute,
            ShardOptimizer = r.GetValue(shardOptimizer),
            OverlapGradientReduction = r.GetValue(overlap),
            GradientBucketElements = r.GetValue(bucket),
        }, r.GetValue(saveGrads), r.GetValue(device)!, r.GetValue(precision), r.GetValue(saveDType)));
        return command;
    }

    /// <summary>The flag of each MagicOptions field this command sets.</summary>
    private static readonly Dictionary<string, string> Flags = new(StringComparer.Ordinal)
    {
        [nameof(MagicOptions.LearningRate)] = "--lr",
        [nameof(MagicOptions.ClipLow)] = "--clip-low",
        [nameof(MagicOptions.ClipHigh)] = "--clip-high",
        [nameof(MagicOptions.MaxGradNorm)] = "--max-grad-norm",
        [nameof(MagicOptions.Temperature)] = "--temperature",
        [nameof(MagicOptions.GradientBucketElements)] = "--grad-bucket-elements",
    };

    public static int Run(string modelDir, string rolloutsPath, string outputDir, MagicOptions options, bool saveGrads, string device,
        Precision? precision = null, Precision? saveDType = null)
    {
        try
        {
            options.Validate();
        }
        catch (ArgumentException e)
        {
            // Named by the flag that set it, where one did.
            throw new CliException(e.ParamName is { } field && Flags.TryGetValue(field, out string? flag)
                ? e.Message.Replace($"MagicOptions.{field}", flag).Replace($" (Parameter '{field}')", "")
                : e.Message, e);
        }
        // Under mpirun every rank reads the whole file, trains the kept groups dealt to it and takes the same update;
        // rank 0 alone writes the outputs.
        return LauncherWorld.Run(world => Step(world, modelDir, rolloutsPath, outputDir, options, saveGrads, device, precision, saveDType));
    }

    private static int Step(OR1.Native.Distributed.ICollectives world, string modelDir, string rolloutsPath, string outputDir, MagicOptions options,
        bool saveGrads, string device, Precision? precision, Precision? saveDType)
    {
        var samples = ReadRollouts(rolloutsPath);
        using var backend = Devices.Create(device);
        using var model = ModelLoading.Load(backend, modelDir, PrecisionOptions.Resolve(backend, precision), master: true);
        // Every rank reads the file and the model from its own disk: the same ones, or every rank stops here naming what differs.
        try
        {
            RankAgreement.Check(world, ("the rollouts file", RankAgreement.Fingerprint(JsonSerializer.Serialize(samples))),
                ("the step's options", RankAgreement.Fingerprint(JsonSerializer.Serialize(options))), ("the model's weights", RankAgreement.Fingerprint(model.Weights)));
        }
        catch (TrainingConfigException e)
        {
            throw new CliException(e.Message, e);
        }
        using var trainer = new MagicTrainer(model, options, world: world);
        trainer.Optimizer.KeepReducedGradients = saveGrads;
        StepMetrics metrics;
        try
        {
            metrics = trainer.Step(samples);
        }
        catch (ArgumentException e)
        {
            throw new CliException($"{rolloutsPath}: {e.Message}", e);
        }

        if (world.WorldSize > 1)
        {
            // The ranks must hold the same weights after the step: every weight the forward reads, fingerprinted and compared.
            try
            {
                RankAgreement.Check(world, ("the weights after the step", RankAgreement.Fingerprint(model.Weights, everyElement: true)));
            }
            catch (TrainingConfigException e)
            {
                throw new CliException($"{e.Message}; the update is not written", e);
            }
            Console.Error.WriteLine($"step: rank {world.Rank} of {world.WorldSize}: the ranks' weights agree (gradients {trainer.CollectivesPath}, {trainer.Optimizer.ReductionDescription})");
            if (world.Rank != 0)
            {
                // The fp32 parameters go into rank 0's file a tensor at a time (with a sharded master, from the ranks' slices).
                OptimizerCheckpoint.FollowWeights(model.Config, trainer.Optimizer);
                return 0;
            }
        }
        Directory.CreateDirectory(outputDir);
        OptimizerCheckpoint.WriteWeights(outputDir, model.Config, trainer.Optimizer, PrecisionOptions.SaveDType(saveDType, model.Config));
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json", "generation_config.json" })
        {
            string source = Path.Combine(modelDir, file);
            if (File.Exists(source) && Path.GetFullPath(modelDir) != Path.GetFullPath(outputDir)) File.Copy(source, Path.Combine(outputDir, file), overwrite: true);
        }
        if (saveGrads)
        {
            // The clipped gradient the update used, streamed from the summed gradient a piece at a time.
            var optimizer = trainer.Optimizer;
            float scale = optimizer.LastClipScale;
            SafetensorsWriter.Write(Path.Combine(outputDir, "grads.safetensors"),
                optimizer.Gradients.Named.Select(p => (p.Name, p.Tensor.Shape.ToArray())).ToArray(),
                (name, sink) => optimizer.StreamReducedGradient(name, scale, sink));
        }
        AtomicFile.Write(Path.Combine(outputDir, "metrics.json"), stream => JsonSerializer.Serialize(stream, metrics, MetricsJson.Options));
        Console.Error.WriteLine(metrics.Skipped
            ? "step: every group had equal rewards; no update was made (the checkpoint is unchanged)"
            : $"step: {metrics.KeptGroups}/{metrics.Groups} groups kept, {metrics.KeptTokens} tokens, pg loss {metrics.PolicyLoss:G4}, grad norm {metrics.GradNorm:G4}");
        return 0;
    }

    private static List<RolloutSample> ReadRollouts(string path)
    {
        var samples = new List<RolloutSample>();
        foreach (var (line, obj) in JsonLines.Read(path))
        {
            string? group = obj.TryGetProperty("group", out var g)
                ? g.ValueKind switch { JsonValueKind.String => g.GetString(), JsonValueKind.Number => g.GetRawText(), _ => null }
                : null;
            if (group is null) throw new CliException($"{path} line {line}: needs \"group\" (a string or number)");
            var prompt = JsonLines.IntArray(obj, "prompt_tokens", path, line) ?? throw new CliException($"{path} line {line}: needs \"prompt_tokens\"");
            var response = JsonLines.IntArray(obj, "response_tokens", path, line) ?? throw new CliException($"{path} line {line}: needs \"response_tokens\"");
            if (!obj.TryGetProperty("reward", out var reward) || reward.ValueKind != JsonValueKind.Number)
                throw new CliException($"{path} line {line}: needs a numeric \"reward\"");
            bool truncated = obj.TryGetProperty("truncated", out var t) && t.ValueKind == JsonValueKind.True;
            float[]? old = null;
            if (obj.TryGetProperty("old_logprobs", out var o) && o.ValueKind == JsonValueKind.Array)
            {
                old = o.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number ? e.GetSingle() : throw new CliException($"{path} line {line}: \"old_logprobs\" must hold numbers")).ToArray();
                if (old.Length != response.Length) throw new CliException($"{path} line {line}: {old.Length} old_logprobs for {response.Length} response tokens");
            }
            samples.Add(new RolloutSample(group, prompt, response, reward.GetDouble(), truncated, old));
        }
        if (samples.Count == 0) throw new CliException($"{path}: no rollouts");
        return samples;
    }
}

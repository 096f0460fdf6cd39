using System.CommandLine;
using System.Text.Json.Nodes;
using OR1.Model;
using OR1.Model.Checkpoints;
using OR1.Model.Planning;
using OR1.Runner.Cli;

namespace OR1.Runner.Commands;

/// <summary>
/// <c>or1 plan</c>: what a run needs in memory, before it is started: the model's state, a micro-batch's activations by
/// part, the rollout engine's KV cache and buffers, the scratch, against the device; and the largest micro-batch and
/// decode batch that fit. A plan that does not fit is an answer, not an error: the exit code is 0 either way.
/// </summary>
public static class PlanCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Model folder (its config.json is read; no weights are loaded)" };
        var shape = new Option<string?>("--shape") { Description = $"A released size instead of a folder: {string.Join(", ", ModelShapes.Names)} (DeepSeek-R1-Distill-Qwen)" };
        var device = new Option<string>("--device") { Description = "cpu (this machine's available memory), h100, h200, or a size in GB (e.g. 48)", DefaultValueFactory = _ => "h200" };
        var precision = PrecisionOptions.CreatePrecision();
        precision.Description = "fp32 or bf16 (default: bf16 on a GPU, fp32 on cpu)";
        var recompute = new Option<bool>("--recompute") { Description = "Activation recomputation (or1 train --recompute)" };
        var context = new Option<int>("--context") { Description = "Tokens of the longest sequence (prompt + response)", DefaultValueFactory = _ => 32768 };
        var samples = new Option<int>("--samples") { Description = "Sequences the rollout engine decodes at once", DefaultValueFactory = _ => 64 };
        var microBatch = new Option<int?>("--micro-batch-tokens") { Description = "Tokens per micro-batch (default: the largest that fits, as micro_batch_tokens: auto)" };
        var ranks = new Option<int>("--ranks") { Description = "Data-parallel ranks sharing the optimizer state (ZeRO-1: master weights and Adam moments split); the plan is per rank, shown beside the unsharded one", DefaultValueFactory = _ => 1 };
        var json = new Option<bool>("--json") { Description = "Write the plan as one JSON object instead of a table" };
        var command = new Command("plan", "Plan a run's memory: what fits on a device") { model, shape, device, precision, recompute, context, samples, microBatch, ranks, json };
        command.SetAction(r => Run(new Arguments(r.GetValue(model), r.GetValue(shape), r.GetValue(device)!, r.GetValue(precision), r.GetValue(recompute),
            r.GetValue(context), r.GetValue(samples), r.GetValue(microBatch), r.GetValue(json), r.GetValue(ranks)), Console.Out));
        return command;
    }

    public sealed record Arguments(string? Model, string? Shape, string Device = "h200", Precision? Precision = null, bool Recompute = false,
        int Context = 32768, int Samples = 64, int? MicroBatchTokens = null, bool Json = false, int Ranks = 1);

    public static int Run(Arguments a, TextWriter output)
    {
        if ((a.Model is null) == (a.Shape is null)) throw new CliException("give exactly one of --model DIR or --shape " + string.Join("|", ModelShapes.Names));
        if (a.Context < 1) throw new CliException($"--context is {a.Context}; it must be at least 1");
        if (a.Samples < 1) throw new CliException($"--samples is {a.Samples}; it must be at least 1");
        if (a.MicroBatchTokens is < 1) throw new CliException($"--micro-batch-tokens is {a.MicroBatchTokens}; it must be positive");
        if (a.Ranks < 1) throw new CliException($"--ranks is {a.Ranks}; it must be at least 1");
        Qwen2Config config;
        string name;
        if (a.Shape is { } s)
        {
            config = ModelShapes.Get(s) ?? throw new CliException($"--shape '{s}' is not a released size; use one of {string.Join(", ", ModelShapes.Names)}");
            name = $"DeepSeek-R1-Distill-Qwen-{s.ToUpperInvariant()}";
        }
        else
        {
            string path = Path.Combine(a.Model!, "config.json");
            if (!File.Exists(path)) throw new CliException($"--model '{a.Model}': no config.json in it");
            try { config = Qwen2Config.Load(path); }
            catch (Exception e) when (e is ModelFormatException or System.Text.Json.JsonException) { throw new CliException($"{path}: {e.Message}", e); }
            name = Path.GetFileName(Path.GetFullPath(a.Model!).TrimEnd(Path.DirectorySeparatorChar));
        }
        var hostAvailable = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        var memory = MemoryPlanner.DeviceMemory(a.Device, hostAvailable > 0 ? hostAvailable : null)
                     ?? throw new CliException($"--device '{a.Device}' is not cpu, h100, h200 or a size in GB");
        var precision = a.Precision ?? (memory.Gpu ? Precision.Bf16 : Precision.Fp32);
        if (!memory.Gpu && precision == Precision.Bf16) throw new CliException("--precision bf16 runs on the CUDA kernels; the cpu device computes in fp32");
        var input = new MemoryPlanInput
        {
            Config = config, Precision = precision, Recompute = a.Recompute, Context = a.Context, Samples = a.Samples,
            DeviceBytes = memory.Bytes, Gpu = memory.Gpu, MicroBatchTokens = a.MicroBatchTokens, Ranks = a.Ranks,
        };
        var plan = MemoryPlanner.Plan(input);
        // With several ranks, the same run with the optimizer state whole on every rank (--shard-optimizer false), beside it.
        var unsharded = a.Ranks > 1 ? MemoryPlanner.Plan(input with { Ranks = 1 }) : null;
        if (a.Json)
        {
            var json = Json(plan, name, a.Device);
            if (unsharded is not null)
            {
                json["unsharded"] = new JsonObject
                {
                    ["master_weights_bytes"] = unsharded.MasterWeightsBytes,
                    ["gradients_bytes"] = unsharded.GradientsBytes,
                    ["optimizer_bytes"] = unsharded.OptimizerBytes,
                    ["total_bytes"] = unsharded.TotalBytes,
                    ["fits"] = unsharded.Fits,
                    ["max_micro_batch_tokens"] = unsharded.MaxMicroBatchTokens,
                    ["max_decode_batch"] = unsharded.MaxDecodeBatch,
                    ["advice"] = unsharded.Advice,
                };
            }
            output.WriteLine(json.ToJsonString(ReadableJson.Options));
        }
        else
        {
            WriteTable(plan, name, a.Device, output);
            if (unsharded is not null) WriteComparison(plan, unsharded, output);
        }
        return 0;
    }

    /// <summary>Per rank, the sharded plan (the trainer's default under mpirun) against the optimizer state whole on every rank.</summary>
    private static void WriteComparison(MemoryPlan sharded, MemoryPlan unsharded, TextWriter o)
    {
        int ranks = sharded.Input.Ranks;
        string Verdict(MemoryPlan p) => p.Fits ? "fits" : "DOES NOT FIT";
        o.WriteLine($"  per rank of {ranks}: optimizer state sharded (ZeRO-1, the default) {MemoryPlan.Gb(sharded.TotalBytes)} ({Verdict(sharded)}), " +
                    $"whole on every rank (--shard-optimizer false) {MemoryPlan.Gb(unsharded.TotalBytes)} ({Verdict(unsharded)}): " +
                    $"sharding saves {MemoryPlan.Gb(unsharded.TotalBytes - sharded.TotalBytes)} a rank " +
                    $"(master weights {MemoryPlan.Gb(unsharded.MasterWeightsBytes)} -> {MemoryPlan.Gb(sharded.MasterWeightsBytes)}, " +
                    $"Adam moments {MemoryPlan.Gb(unsharded.OptimizerBytes)} -> {MemoryPlan.Gb(sharded.OptimizerBytes)})");
        if (!unsharded.Fits && unsharded.Advice is { } advice) o.WriteLine($"  unsharded: {advice}");
    }

    public static JsonObject Json(MemoryPlan plan, string model, string device)
    {
        var p = plan.ActivationsPerToken;
        return new JsonObject
        {
            ["model"] = model,
            ["device"] = device,
            ["precision"] = plan.Input.Precision.Name(),
            ["recompute"] = plan.Input.Recompute,
            ["context"] = plan.Input.Context,
            ["samples"] = plan.Input.Samples,
            ["ranks"] = plan.Input.Ranks,
            ["parameters"] = plan.Parameters,
            ["weights_bytes"] = plan.WeightsBytes,
            ["master_weights_bytes"] = plan.MasterWeightsBytes,
            ["gradients_bytes"] = plan.GradientsBytes,
            ["optimizer_bytes"] = plan.OptimizerBytes,
            ["activations_bytes"] = plan.ActivationsBytes,
            ["activations_per_token_bytes"] = new JsonObject
            {
                ["residual_stream"] = p.ResidualStream, ["attention"] = p.Attention, ["mlp"] = p.Mlp, ["norms"] = p.Norms,
                ["lm_head"] = p.LmHead, ["backward"] = p.Backward, ["micro_batch"] = p.MicroBatch, ["total"] = p.Total,
            },
            ["lm_head_chunk_bytes"] = plan.LmHeadChunkBytes,
            ["kv_cache_per_token_bytes"] = plan.KvCachePerTokenBytes,
            ["kv_cache_bytes"] = plan.KvCacheBytes,
            ["rollout_buffers_bytes"] = plan.RolloutBuffersBytes,
            ["reserved_bytes"] = plan.ReservedBytes,
            ["scratch_bytes"] = plan.ScratchBytes,
            ["total_bytes"] = plan.TotalBytes,
            ["device_bytes"] = plan.DeviceBytes,
            ["fits"] = plan.Fits,
            ["micro_batch_tokens"] = plan.MicroBatchTokens,
            ["max_micro_batch_tokens"] = plan.MaxMicroBatchTokens,
            ["max_decode_batch"] = plan.MaxDecodeBatch,
            ["minimum_bytes"] = plan.MinimumBytes,
            ["advice"] = plan.Advice,
        };
    }

    private static void WriteTable(MemoryPlan plan, string model, string device, TextWriter o)
    {
        var input = plan.Input;
        o.WriteLine($"{model} on {device} ({MemoryPlan.Gb(plan.DeviceBytes)}), {input.Precision.Name()}{(input.Recompute ? ", recomputing activations" : "")}, " +
                    $"{input.Context:N0}-token sequences, rollout batch {input.Samples}" +
                    (input.Ranks > 1 ? $", per rank of {input.Ranks} sharing the optimizer state" : ""));
        void Row(string what, long bytes, string note = "") => o.WriteLine($"  {what,-34} {MemoryPlan.Gb(bytes),12}  {note}");
        Row("weights", plan.WeightsBytes, $"{plan.Parameters:N0} parameters in {input.Precision.Name()}");
        Row("master weights", plan.MasterWeightsBytes, input.Precision == Precision.Bf16 ? "fp32" : "none in fp32");
        Row("gradients", plan.GradientsBytes, plan.Input.Ranks > 1 ? "fp32, and the slice of their sum this rank updates from" : "fp32");
        Row("Adam moments", plan.OptimizerBytes, "2 x fp32");
        Row("activations", plan.ActivationsBytes, $"micro-batch of {plan.MicroBatchTokens:N0} tokens x {plan.ActivationsPerToken.Total:N0} bytes");
        var p = plan.ActivationsPerToken;
        foreach (var (part, bytes) in new[] { ("residual stream", p.ResidualStream), ("attention", p.Attention), ("MLP", p.Mlp), ("norms", p.Norms),
                     ("LM head (log-sum-exp)", p.LmHead), ("backward buffers", p.Backward), ("micro-batch inputs", p.MicroBatch) })
            o.WriteLine($"    {part,-32} {bytes,12:N0} bytes per token");
        Row("LM head chunk", plan.LmHeadChunkBytes, "logit tile and row statistics");
        Row("KV cache (rollout)", plan.KvCacheBytes, $"{plan.KvCachePerTokenBytes:N0} bytes per token");
        Row("rollout buffers", plan.RolloutBuffersBytes, "decode and prefill arenas, logits");
        if (plan.ReservedBytes > 0) Row("CUDA context and workspaces", plan.ReservedBytes);
        Row("total", plan.TotalBytes, plan.Fits ? "fits" : "DOES NOT FIT");
        o.WriteLine($"  largest micro-batch: {plan.MaxMicroBatchTokens:N0} tokens; largest decode batch: {plan.MaxDecodeBatch:N0} sequences of {input.Context:N0} tokens");
        if (plan.Advice is { } advice) o.WriteLine($"  {advice}");
    }
}

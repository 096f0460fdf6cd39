using System.CommandLine;
using System.Text.Json;
using OR1.Model;
using OR1.Model.Generation;
using OR1.Model.Tokenization;
using OR1.Native;
using OR1.Runner.Cli;

namespace OR1.Runner.Commands;

/// <summary>
/// <c>or1 generate</c>: samples continuations of chat prompts (the model's chat template with the
/// generation prompt applied) with the KV-cache generator, printing them or writing JSONL.
/// </summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model directory (config.json, safetensors, tokenizer.json)", Required = true };
        var prompt = new Option<string?>("--prompt") { Description = "One user message to answer" };
        var input = new Option<string?>("--input") { Description = "JSONL: {\"prompt\":\"..\"}, {\"messages\":[{\"role\":..,\"content\":..}]} or {\"prompt_tokens\":[..]} per line" };
        var output = new Option<string?>("--output") { Description = "Write samples as JSONL here instead of printing them" };
        var samples = new Option<int>("--samples", "-n") { Description = "Samples per prompt", DefaultValueFactory = _ => 1 };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Stop a sample after this many tokens", DefaultValueFactory = _ => 512 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature (0 = greedy)", DefaultValueFactory = _ => 1f };
        var topP = new Option<float>("--top-p") { Description = "Nucleus mass (1 = off)", DefaultValueFactory = _ => 1f };
        var topK = new Option<int>("--top-k") { Description = "Keep the K most likely tokens (0 = off)", DefaultValueFactory = _ => 0 };
        var seed = new Option<ulong>("--seed") { Description = "Sampler seed", DefaultValueFactory = _ => 0UL };
        var maxBatch = new Option<int>("--max-batch") { Description = "Samples decoded together", DefaultValueFactory = _ => 64 };
        var kvMemory = KvCacheMemoryOption.Create();
        var cudaGraphs = CudaGraphsOption.Create();
        var decodeSteps = DecodeStepsOption.Create();
        var device = Devices.CreateOption();
        var precision = PrecisionOptions.CreatePrecision();
        var command = new Command("generate", "Sample answers to prompts") { model, prompt, input, output, samples, maxNew, temperature, topP, topK, seed, maxBatch, kvMemory, cudaGraphs, decodeSteps, device, precision };
        command.SetAction(r => Run(new Arguments(r.GetValue(model)!, r.GetValue(prompt), r.GetValue(input), r.GetValue(output), r.GetValue(samples),
            r.GetValue(maxNew), new SamplingOptions(r.GetValue(temperature), r.GetValue(topP), r.GetValue(topK)), r.GetValue(seed), r.GetValue(maxBatch), r.GetValue(device)!, r.GetValue(precision), r.GetValue(kvMemory), r.GetValue(cudaGraphs), r.GetValue(decodeSteps))));
        return command;
    }

    public sealed record Arguments(string Model, string? Prompt, string? Input, string? Output, int Samples, int MaxNewTokens,
        SamplingOptions Sampling, ulong Seed, int MaxBatch, string Device, Precision? Precision = null, string? KvCacheMemory = null, bool CudaGraphs = true,
        int DecodeStepsPerSync = 0);

    public static int Run(Arguments a)
    {
        SingleProcessOnly.Check("or1 generate");
        if ((a.Prompt is null) == (a.Input is null)) throw new CliException("give exactly one of --prompt TEXT or --input FILE");
        if (a.Samples < 1) throw new CliException($"--samples is {a.Samples}; it must be at least 1");
        if (a.MaxNewTokens < 1) throw new CliException($"--max-new-tokens is {a.MaxNewTokens}; it must be at least 1");
        if (a.MaxBatch < 1) throw new CliException($"--max-batch is {a.MaxBatch}; it must be at least 1");
        if (!(a.Sampling.Temperature >= 0)) throw new CliException($"--temperature is {a.Sampling.Temperature}; it must be 0 (greedy) or positive");
        if (!(a.Sampling.TopP > 0 && a.Sampling.TopP <= 1)) throw new CliException($"--top-p is {a.Sampling.TopP}; it must be in (0, 1]");
        if (a.Sampling.TopK < 0) throw new CliException($"--top-k is {a.Sampling.TopK}; it must be 0 (off) or positive");
        long kvCacheBytes = KvCacheMemoryOption.Bytes(a.KvCacheMemory);
        int decodeSteps = DecodeStepsOption.Checked(a.DecodeStepsPerSync);

        using var backend = Devices.Create(a.Device);
        using var model = ModelLoading.Load(backend, a.Model, PrecisionOptions.Resolve(backend, a.Precision));
        var tokenizer = ModelLoading.LoadTokenizer(a.Model, "generate decodes text");
        var prompts = a.Prompt is not null
            ? [tokenizer.Encode(tokenizer.Template.Apply([ChatMessage.User(a.Prompt)], addGenerationPrompt: true)).ToArray()]
            : ReadPrompts(a.Input!, tokenizer);
        var stop = new HashSet<int>(model.Config.EosTokenIds);
        if (tokenizer.EosId is { } eos) stop.Add(eos);
        int longest = prompts.Max(p => p.Length);
        if (longest + a.MaxNewTokens > model.Config.MaxPositionEmbeddings)
            Console.Error.WriteLine($"warning: prompt ({longest} tokens) + --max-new-tokens {a.MaxNewTokens} exceeds the model's max_position_embeddings {model.Config.MaxPositionEmbeddings}");

        using var generator = KvCacheMemoryOption.CreateGenerator(model, Math.Min(a.MaxBatch, prompts.Length * a.Samples), longest + a.MaxNewTokens, kvCacheBytes, a.KvCacheMemory, a.CudaGraphs, decodeSteps);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var results = ProgressDisplay.Run("generate: samples", update => generator.Generate(prompts.Select(p => (IReadOnlyList<int>)p).ToArray(),
            new GenerationOptions(a.MaxNewTokens, a.Sampling, stop, a.Samples, a.Seed),
            new SynchronousProgress<GenerationProgress>(p => update(p.FinishedSamples, p.TotalSamples,
                $"{TokensPerSecond(p.GeneratedTokens, clock.Elapsed)}  {EngineRates(p.Stats)}"))));
        Console.Error.WriteLine($"generate: {EngineSummary(generator.LastStats)}");

        if (a.Output is null)
        {
            foreach (var s in results)
            {
                Console.WriteLine($"--- prompt {s.PromptIndex} sample {s.SampleIndex} ({s.Tokens.Count} tokens{(s.Truncated ? ", truncated" : "")}) ---");
                Console.WriteLine(tokenizer.Decode(s.Tokens, skipSpecialTokens: true));
            }
            return 0;
        }
        AtomicFile.Write(a.Output, stream =>
        {
            using var writer = new Utf8JsonWriter(stream, ReadableJson.WriterOptions());
            foreach (var s in results)
            {
                writer.WriteStartObject();
                writer.WriteNumber("prompt_index", s.PromptIndex);
                writer.WriteNumber("sample_index", s.SampleIndex);
                writer.WriteString("text", tokenizer.Decode(s.Tokens, skipSpecialTokens: false));
                writer.WriteStartArray("tokens");
                foreach (int t in s.Tokens) writer.WriteNumberValue(t);
                writer.WriteEndArray();
                writer.WriteStartArray("logprobs");
                foreach (float lp in s.LogProbs) writer.WriteNumberValue(lp);
                writer.WriteEndArray();
                writer.WriteBoolean("truncated", s.Truncated);
                if (s.TruncatedMass is { } mass && mass.Any(m => m > 0))
                {
                    // The probability top-k/top-p kept out of each token's draw (the logprobs are the full vocabulary's).
                    writer.WriteStartArray("truncated_mass");
                    foreach (float m in mass) writer.WriteNumberValue(m);
                    writer.WriteEndArray();
                }
                writer.WriteEndObject();
                writer.Flush();
                stream.WriteByte((byte)'\n');
                writer.Reset();
            }
        });
        Console.Error.WriteLine($"generate: wrote {results.Count} samples to {a.Output}");
        return 0;
    }

    /// <summary>
    /// The engine's rates, its decode batch's occupancy, the KV cache's use and the pre-emptions so far: "prefill 12,345
    /// tok/s, decode 1,234 tok/s, batch 97%, cache 41%, 0 pre-empted".
    /// </summary>
    public static string EngineRates(GenerationStats s) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"prefill {s.PrefillTokensPerSecond:N0} tok/s, decode {s.DecodeTokensPerSecond:N0} tok/s, batch {s.MeanOccupancy * 100:F0}%, " +
            $"cache {s.CacheUse * 100:F0}%, {s.Preemptions:N0} pre-empted");

    /// <summary>The closing line of a generation: tokens, rates, occupancy (overall and while requests waited).</summary>
    public static string EngineSummary(GenerationStats s)
    {
        var invariant = System.Globalization.CultureInfo.InvariantCulture;
        string cut = s.TruncatedMassSum > 0 ? string.Create(invariant, $", mean mass cut by top-k/top-p {s.MeanTruncatedMass:G3}") : "";
        string graphs = s.DecodeGraphCaptures > 0
            ? string.Create(invariant, $", {s.DecodeGraphReplays:N0} of {s.DecodeSteps:N0} steps replayed from {s.DecodeGraphCaptures} device graphs")
            : "";
        return string.Create(invariant,
            $"{s.PrefillTokens:N0} prompt tokens prefilled in {s.Prefills:N0} waves ({s.PrefillTokensPerSecond:N0} tok/s), " +
            $"{s.DecodeTokens:N0} tokens decoded in {s.DecodeSteps:N0} steps ({s.DecodeTokensPerSecond:N0} tok/s), " +
            $"mean batch {s.MeanOccupancy * 100:F1}% of {s.Slots} slots ({s.MeanOccupancyWhileQueued * 100:F1}% while requests waited), " +
            $"KV cache peak {s.PeakCacheUse * 100:F1}% of {s.CachePages:N0} pages, {s.Preemptions:N0} pre-emptions{cut}{graphs}");
    }

    /// <summary>"1,234 tok/s" over the time so far.</summary>
    public static string TokensPerSecond(long tokens, TimeSpan elapsed) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{(elapsed.TotalSeconds > 0 ? tokens / elapsed.TotalSeconds : 0):N0} tok/s");

    private static int[][] ReadPrompts(string path, Qwen2Tokenizer tokenizer)
    {
        var prompts = new List<int[]>();
        foreach (var (line, obj) in JsonLines.Read(path))
        {
            if (JsonLines.IntArray(obj, "prompt_tokens", path, line) is { } tokens)
            {
                if (tokens.Length == 0) throw new CliException($"{path} line {line}: \"prompt_tokens\" is empty");
                prompts.Add(tokens);
                continue;
            }
            List<ChatMessage> messages;
            if (JsonLines.String(obj, "prompt", path, line) is { } text) messages = [ChatMessage.User(text)];
            else if (obj.TryGetProperty("messages", out var list) && list.ValueKind == JsonValueKind.Array)
            {
                messages = [];
                foreach (var m in list.EnumerateArray())
                {
                    string? role = m.ValueKind == JsonValueKind.Object ? JsonLines.String(m, "role", path, line) : null;
                    string? content = m.ValueKind == JsonValueKind.Object ? JsonLines.String(m, "content", path, line) : null;
                    if (role is null || content is null) throw new CliException($"{path} line {line}: every message needs string \"role\" and \"content\"");
                    messages.Add(new ChatMessage(role, content));
                }
            }
            else throw new CliException($"{path} line {line}: needs \"prompt\", \"messages\" or \"prompt_tokens\"");
            prompts.Add(tokenizer.Encode(tokenizer.Template.Apply(messages, addGenerationPrompt: true)).ToArray());
        }
        if (prompts.Count == 0) throw new CliException($"{path}: no prompts");
        return prompts.ToArray();
    }
}

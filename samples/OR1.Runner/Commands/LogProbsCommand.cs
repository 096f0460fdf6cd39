using System.CommandLine;
using System.Text.Json;
using OR1.Model;
using OR1.Model.Tokenization;
using OR1.Native;
using OR1.Runner.Cli;

namespace OR1.Runner.Commands;

/// <summary>
/// <c>or1 logprobs</c>: per response token, log p(response[i] | prompt, response[:i]) and the
/// full-vocabulary entropy at that position, at a temperature — the quantities the trainer's loss uses,
/// so other tools (vLLM rollouts, HF) can be checked against ours.
/// </summary>
public static class LogProbsCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model directory (config.json + safetensors)", Required = true };
        var input = new Option<string>("--input") { Description = "JSONL: {\"prompt_tokens\":[..],\"response_tokens\":[..]} or {\"prompt\":\"..\",\"response\":\"..\"} per line", Required = true };
        var output = new Option<string>("--output") { Description = "JSONL output: {\"logprobs\":[..],\"entropies\":[..]} per input line", Required = true };
        var temperature = new Option<float>("--temperature") { Description = "Logits are divided by this before the softmax", DefaultValueFactory = _ => 1f };
        var tokenBudget = new Option<int>("--token-budget") { Description = "Tokens per packed forward pass (memory bound)", DefaultValueFactory = _ => 8192 };
        var device = Devices.CreateOption();
        var precision = PrecisionOptions.CreatePrecision();
        var command = new Command("logprobs", "Per-token log-probs and entropies of responses under a model") { model, input, output, temperature, tokenBudget, device, precision };
        command.SetAction(result => Run(result.GetValue(model)!, result.GetValue(input)!, result.GetValue(output)!,
            result.GetValue(temperature), result.GetValue(tokenBudget), result.GetValue(device)!, result.GetValue(precision)));
        return command;
    }

    public static int Run(string modelDir, string inputPath, string outputPath, float temperature, int tokenBudget, string device, Precision? precision = null)
    {
        if (!(temperature > 0) || !float.IsFinite(temperature)) throw new CliException($"--temperature is {temperature}; it must be a positive number");
        if (tokenBudget < 1) throw new CliException($"--token-budget is {tokenBudget}; it must be positive");
        using var backend = Devices.Create(device);
        using var model = ModelLoading.Load(backend, modelDir, PrecisionOptions.Resolve(backend, precision));
        var requests = ReadRequests(inputPath, modelDir, model.Config.VocabSize);

        var builder = new ResponseBatch.Builder();
        foreach (var request in requests) builder.BeginGroup(request.Prompt).AddResponse(request.Response);
        var batch = builder.Build();
        var results = new (float[] LogProbs, float[] Entropies)[requests.Count];
        var ranges = batch.SplitByTokens(0, batch.SequenceCount, tokenBudget);
        using var activations = new Qwen2Activations(backend, model.Config, ranges.Count == 0 ? 1 : ranges.Max(r => r.TokenCount), model.Storage);
        using var buffers = new MicroBatchBuffers(backend, model.Config.VocabSize);
        ProgressDisplay.Run("logprobs: lines", update =>
        {
            foreach (var range in ranges)
            {
                Evaluate(model, activations, buffers, batch, range, temperature, results);
                update(range.EndSequence, batch.SequenceCount, "");
            }
            return 0;
        });

        AtomicFile.Write(outputPath, stream =>
        {
            using var writer = new Utf8JsonWriter(stream, ReadableJson.WriterOptions());
            foreach (var (logProbs, entropies) in results)
            {
                writer.WriteStartObject();
                WriteArray(writer, "logprobs", logProbs);
                WriteArray(writer, "entropies", entropies);
                writer.WriteEndObject();
                writer.Flush();
                stream.WriteByte((byte)'\n');
                writer.Reset();
            }
        });
        Console.Error.WriteLine($"logprobs: wrote {results.Length} lines to {outputPath}");
        return 0;
    }

    private sealed record Request(int Line, int[] Prompt, int[] Response);

    private static List<Request> ReadRequests(string path, string modelDir, int vocab)
    {
        Qwen2Tokenizer? tokenizer = null;
        var requests = new List<Request>();
        foreach (var (line, obj) in JsonLines.Read(path))
        {
            int[]? prompt = JsonLines.IntArray(obj, "prompt_tokens", path, line);
            int[]? response = JsonLines.IntArray(obj, "response_tokens", path, line);
            string? promptText = JsonLines.String(obj, "prompt", path, line);
            string? responseText = JsonLines.String(obj, "response", path, line);
            if (prompt is null && promptText is null) throw new CliException($"{path} line {line}: needs \"prompt_tokens\" or \"prompt\"");
            if (response is null && responseText is null) throw new CliException($"{path} line {line}: needs \"response_tokens\" or \"response\"");
            if (prompt is null || response is null)
            {
                tokenizer ??= ModelLoading.LoadTokenizer(modelDir, $"{path} line {line} gives text instead of token ids");
                prompt ??= tokenizer.Encode(promptText!, addSpecialTokens: false).ToArray();
                response ??= tokenizer.Encode(responseText!, addSpecialTokens: false).ToArray();
            }
            if (prompt.Length == 0) throw new CliException($"{path} line {line}: the prompt is empty; the first response token needs at least one token of context");
            foreach (int id in prompt.Concat(response))
                if ((uint)id >= (uint)vocab) throw new CliException($"{path} line {line}: token id {id} is outside the model's vocabulary [0, {vocab})");
            requests.Add(new Request(line, prompt, response));
        }
        return requests;
    }

    /// <summary>Log-probs and entropies of the response tokens of one micro-batch.</summary>
    private static void Evaluate(Qwen2Model model, Qwen2Activations activations, MicroBatchBuffers buffers, ResponseBatch batch, SequenceRange range,
        float temperature, (float[] LogProbs, float[] Entropies)[] results)
    {
        var backend = model.Backend;
        using var micro = buffers.Load(batch, range);
        model.Forward(micro.Packed, activations);
        model.LogProbs(activations, micro.Targets, temperature, micro.LogProbs, micro.Entropy);
        var logProbs = new float[range.TokenCount];
        var entropy = new float[range.TokenCount];
        backend.Download<float>(micro.LogProbs, logProbs);
        backend.Download<float>(micro.Entropy, entropy);
        for (int s = range.FirstSequence; s < range.EndSequence; s++)
        {
            int start = batch.ResponseStart(s) - range.TokenStart, length = batch.ResponseLength(s);
            results[s] = (logProbs.AsSpan(start, length).ToArray(), entropy.AsSpan(start, length).ToArray());
        }
    }

    private static void WriteArray(Utf8JsonWriter writer, string name, float[] values)
    {
        writer.WriteStartArray(name);
        foreach (float v in values) writer.WriteNumberValue(v);
        writer.WriteEndArray();
    }
}

using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using OR1.Grpo.Data;
using OR1.Grpo.Rewards;
using OR1.Model;
using OR1.Runner.Cli;

namespace OR1.Runner.Commands;

/// <summary>
/// <c>or1 reward</c>: scores responses with the rule-based verifiers. Input lines
/// {"response", "ground_truth", "ability"}; output: the same objects with "reward" and "reason" added.
/// </summary>
public static class RewardCommand
{
    public static Command Create()
    {
        var input = new Option<string>("--input") { Description = "JSONL of {\"response\", \"ground_truth\", \"ability\"[, \"truncated\"]}", Required = true };
        var output = new Option<string>("--output") { Description = "JSONL output with \"reward\" and \"reason\"", Required = true };
        var unsafeNoSandbox = CodeSandboxOption.Create();
        var command = new Command("reward", "Score responses with the math/code verifiers") { input, output, unsafeNoSandbox };
        command.SetAction(r => Run(r.GetValue(input)!, r.GetValue(output)!, r.GetValue(unsafeNoSandbox)));
        return command;
    }

    /// <param name="inputPath">JSONL responses.</param>
    /// <param name="outputPath">JSONL output.</param>
    /// <param name="unsafeNoSandbox">Run code without the sandbox (warned about).</param>
    public static int Run(string inputPath, string outputPath, bool unsafeNoSandbox = false)
    {
        var router = new RewardRouter(CodeSandboxOption.Verifiers(unsafeNoSandbox));
        var lines = new List<JsonObject>();
        foreach (var (line, obj) in JsonLines.Read(inputPath))
        {
            string response = JsonLines.String(obj, "response", inputPath, line) ?? throw new CliException($"{inputPath} line {line}: needs \"response\"");
            string ability = JsonLines.String(obj, "ability", inputPath, line) ?? throw new CliException($"{inputPath} line {line}: needs \"ability\" (\"math\" or \"code\")");
            if (!obj.TryGetProperty("ground_truth", out var truthElement)) throw new CliException($"{inputPath} line {line}: needs \"ground_truth\"");
            var node = JsonNode.Parse(truthElement.GetRawText());
            if (!GroundTruthDecoder.TryDecode(ability, node, out var truth, out string? error))
                throw new CliException($"{inputPath} line {line}: ground_truth cannot be decoded for ability '{ability}': {error}");
            bool truncated = obj.TryGetProperty("truncated", out var t) && t.ValueKind == JsonValueKind.True;
            var result = router.Score(response, truth!, truncated);
            var outputLine = JsonNode.Parse(obj.GetRawText())!.AsObject();
            outputLine["reward"] = result.Score;
            outputLine["reason"] = result.Reason;
            lines.Add(outputLine);
        }
        AtomicFile.Write(outputPath, stream =>
        {
            using var writer = new StreamWriter(stream);
            foreach (var l in lines) writer.WriteLine(l.ToJsonString(ReadableJson.Options));
        });
        Console.Error.WriteLine($"reward: {lines.Count} responses, mean reward {(lines.Count == 0 ? 0 : lines.Average(l => (double)l["reward"]!)):F3}");
        return 0;
    }
}

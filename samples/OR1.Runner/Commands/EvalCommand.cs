using System.CommandLine;
using System.Text.Json;
using OR1.Grpo.Data;
using OR1.Grpo.Evaluation;
using OR1.Grpo.Rewards;
using OR1.Grpo.Rollout;
using OR1.Grpo.Training;
using OR1.Model;
using OR1.Model.Checkpoints;
using OR1.Model.Generation;
using OR1.Native;
using OR1.Runner.Cli;

namespace OR1.Runner.Commands;

/// <summary><c>or1 eval</c>: Avg@K, pass@1 and pass@K of a model on a dataset, per data_source.</summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model directory", Required = true };
        var data = new Option<string>("--data") { Description = "Parquet or JSONL file in the Skywork-OR1 schema", Required = true };
        var k = new Option<int>("-k") { Description = "Samples per problem", DefaultValueFactory = _ => 32 };
        var temperature = new Option<float>("--temperature") { DefaultValueFactory = _ => 1f, Description = "Sampling temperature" };
        var topP = new Option<float>("--top-p") { DefaultValueFactory = _ => 1f, Description = "Nucleus mass" };
        var maxNew = new Option<int>("--max-new-tokens") { DefaultValueFactory = _ => 32768, Description = "Response length limit" };
        var seed = new Option<ulong>("--seed") { DefaultValueFactory = _ => 0UL, Description = "Sampler seed" };
        var maxBatch = new Option<int>("--max-batch") { DefaultValueFactory = _ => 64, Description = "Samples decoded together" };
        var kvMemory = KvCacheMemoryOption.Create();
        var cudaGraphs = CudaGraphsOption.Create();
        var decodeSteps = DecodeStepsOption.Create();
        var output = new Option<string?>("--output") { Description = "Also write every response with its reward as JSONL" };
        var device = Devices.CreateOption();
        var unsafeNoSandbox = CodeSandboxOption.Create();
        var precision = PrecisionOptions.CreatePrecision();
        var command = new Command("eval", "Avg@K evaluation") { model, data, k, temperature, topP, maxNew, seed, maxBatch, kvMemory, cudaGraphs, decodeSteps, output, device, unsafeNoSandbox, precision };
        command.SetAction(r => Run(r.GetValue(model)!, r.GetValue(data)!, r.GetValue(k), new SamplingOptions(r.GetValue(temperature), r.GetValue(topP)),
            r.GetValue(maxNew), r.GetValue(seed), r.GetValue(maxBatch), r.GetValue(output), r.GetValue(device)!, r.GetValue(unsafeNoSandbox), r.GetValue(precision), r.GetValue(kvMemory), r.GetValue(cudaGraphs), r.GetValue(decodeSteps)));
        return command;
    }

    public static int Run(string modelDir, string dataPath, int k, SamplingOptions sampling, int maxNewTokens, ulong seed, int maxBatch, string? output, string device,
        bool unsafeNoSandbox = false, Precision? precision = null, string? kvCacheMemory = null, bool cudaGraphs = true,
        int decodeStepsPerSync = 0)
    {
        SingleProcessOnly.Check("or1 eval");
        if (k < 1) throw new CliException($"-k is {k}; it must be at least 1");
        if (maxNewTokens < 1) throw new CliException($"--max-new-tokens is {maxNewTokens}; it must be at least 1");
        long kvCacheBytes = KvCacheMemoryOption.Bytes(kvCacheMemory);
        int decodeSteps = DecodeStepsOption.Checked(decodeStepsPerSync);
        var report = new DataLoadReport();
        IReadOnlyList<RlExample> examples;
        try
        {
            examples = DatasetReader.Read(dataPath, report);
        }
        catch (Exception e) when (e is DatasetFormatException or FileNotFoundException)
        {
            throw new CliException(e.Message, e);
        }
        if (examples.Count == 0) throw new CliException($"{dataPath}: no usable rows ({report.Summary()})");
        Console.Error.WriteLine($"eval: {examples.Count} problems ({report.Summary()})");

        using var backend = Devices.Create(device);
        using var model = ModelLoading.Load(backend, modelDir, PrecisionOptions.Resolve(backend, precision));
        var tokenizer = ModelLoading.LoadTokenizer(modelDir, "eval builds chat prompts");
        var encoder = new PromptEncoder(tokenizer);
        int longest = examples.Max(e => encoder.Encode(e).Length);
        using var generator = KvCacheMemoryOption.CreateGenerator(model, Math.Min(maxBatch, examples.Count * k), longest + maxNewTokens, kvCacheBytes, kvCacheMemory, cudaGraphs, decodeSteps);
        var collector = new RolloutCollector(generator, encoder, new RewardRouter(CodeSandboxOption.Verifiers(unsafeNoSandbox)), PromptEncoder.StopTokens(tokenizer, model.Config.EosTokenIds));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var (scores, responses) = ProgressDisplay.Run("eval: samples", update => Evaluator.Run(collector, examples, k, sampling, maxNewTokens, seed,
            new SynchronousProgress<EvalProgress>(p => update(p.FinishedSamples, p.TotalSamples,
                $"{GenerateCommand.TokensPerSecond(p.GeneratedTokens, clock.Elapsed)}" +
                (p.ScoredProblems > 0 ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $", avg@{k} {p.RunningAvgAtK * 100:F1}% over {p.ScoredProblems} problems") : "")))));
        foreach (var s in scores)
            Console.WriteLine($"{s.DataSource}: avg@{s.K} {s.AvgAtK:P2}  pass@1 {s.PassAt1:P2}  pass@{s.K} {s.PassAtK:P2}  ({s.Problems} problems)");
        Console.Error.WriteLine($"eval: {GenerateCommand.EngineSummary(responses.Engine)}");
        if (output is not null)
        {
            AtomicFile.Write(output, stream =>
            {
                using var writer = new StreamWriter(stream);
                int[] group = responses.GroupOfSequence();
                for (int s = 0; s < group.Length; s++)
                {
                    var example = responses.Examples[group[s]];
                    writer.WriteLine(JsonSerializer.Serialize(new
                    {
                        id = example.Id, data_source = example.DataSource, response = responses.Texts[s], reward = responses.Rewards[s].Score,
                        reason = responses.Rewards[s].Reason, truncated = responses.Batch.Truncated[s],
                    }, MetricsJson.Lines));
                }
            });
        }
        return 0;
    }
}

using System.Diagnostics;
using System.Text.Json;
using OR1.Grpo.Data;
using OR1.Grpo.Evaluation;
using OR1.Grpo.Rewards;
using OR1.Grpo.Rewards.Math;
using OR1.Grpo.Rollout;
using OR1.Grpo.Training;
using OR1.Model;
using OR1.Model.Generation;
using OR1.Model.Tokenization;
using OR1.Native;
using Spectre.Console;

namespace OR1.Runner.Sample;

/// <summary>What the sample measured; written as summary.json.</summary>
public sealed record SampleSummary
{
    public int K { get; init; }
    public double AvgAtKBefore { get; init; }
    public double AvgAtKAfter { get; init; }
    // The snake_case policy would write "pass_at1_before"; the issue's name has an underscore before the 1.
    [System.Text.Json.Serialization.JsonPropertyName("pass_at_1_before")]
    public double PassAt1Before { get; init; }
    [System.Text.Json.Serialization.JsonPropertyName("pass_at_1_after")]
    public double PassAt1After { get; init; }
    public IReadOnlyDictionary<string, double> AvgAtKBeforeByLevel { get; init; } = new Dictionary<string, double>();
    public IReadOnlyDictionary<string, double> AvgAtKAfterByLevel { get; init; } = new Dictionary<string, double>();
    /// <summary>Completed MAGIC steps (the non-skipped lines of metrics.jsonl).</summary>
    public int Steps { get; init; }
    public int SkippedSteps { get; init; }
    public double WarmupLoss { get; init; }
    public double WarmupSeconds { get; init; }
    public double RlSeconds { get; init; }
    public double WallSeconds { get; init; }
    public string Backend { get; init; } = "";
    public ulong Seed { get; init; }
    public bool Quick { get; init; }
    public long Parameters { get; init; }
}

/// <summary>
/// The bundled sample end to end: synthetic verifiable arithmetic in the Skywork-OR1 schema, a small
/// Qwen2 policy, supervised warm-up on worked solutions, held-out avg@K, MAGIC training in two stages with
/// growing response length (rejection sampling and adaptive entropy control on), held-out avg@K again,
/// plots, the final HF checkpoint and summary.json.
/// </summary>
public sealed class SampleRun(IBackend backend, SampleSettings settings, ulong seed, string outputDir, bool quick)
{
    private readonly JsonSerializerOptions _json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true, Encoder = ReadableJson.Encoder };

    public SampleSummary Run()
    {
        var wall = Stopwatch.StartNew();
        Directory.CreateDirectory(outputDir);
        string tokenizerDir = Path.Combine(outputDir, "tokenizer");
        SampleTokenizerFiles.Write(tokenizerDir);
        var tokenizer = Qwen2Tokenizer.Load(tokenizerDir);

        // Data: a train split per level, and a held-out split the model never trains on.
        var train = ArithmeticTask.Levels.ToDictionary(l => l, l => ArithmeticTask.Generate(l, settings.TrainProblemsPerLevel, (long)seed, DataSplit.Train));
        var heldOut = ArithmeticTask.Levels.SelectMany(l => ArithmeticTask.Generate(l, settings.HeldOutProblemsPerLevel, (long)seed + 1, DataSplit.HeldOut)).ToArray();
        Directory.CreateDirectory(Path.Combine(outputDir, "data"));
        ArithmeticTask.WriteJsonl(Path.Combine(outputDir, "data", "train.jsonl"), train.Values.SelectMany(p => p));
        ArithmeticTask.WriteJsonl(Path.Combine(outputDir, "data", "heldout.jsonl"), heldOut);
        AnsiConsole.MarkupLine($"[bold]data[/]: {train.Values.Sum(p => p.Count)} training problems over {train.Count} levels, {heldOut.Length} held-out problems ([grey]{outputDir}/data[/])");

        var config = SampleSettings.ModelConfig;
        using var model = new Qwen2Model(backend, config);
        model.Weights.InitializeRandom((int)(seed % int.MaxValue));
        AnsiConsole.MarkupLine($"[bold]model[/]: Qwen2, {config.NumHiddenLayers} layers, hidden {config.HiddenSize}, {config.NumAttentionHeads}/{config.NumKeyValueHeads} heads, {model.Weights.ParameterCount:N0} parameters, on {Markup.Escape(backend.Description)}");

        var encoder = new PromptEncoder(tokenizer);
        var (warmupLoss, warmupSeconds) = WarmUp(model, tokenizer, encoder, train);
        string warmupDir = Path.Combine(outputDir, "warmup");
        SaveCheckpoint(model, warmupDir, tokenizerDir);

        var heldOutExamples = ArithmeticTask.ToExamples(heldOut);
        var before = Evaluate(model, tokenizer, encoder, heldOutExamples, "evaluate warm-up", seed + 11);

        var rl = Stopwatch.StartNew();
        int skipped = Train(model, encoder, tokenizerDir, warmupDir, train);
        double rlSeconds = rl.Elapsed.TotalSeconds;
        string finalDir = Path.Combine(outputDir, "final");
        SaveCheckpoint(model, finalDir, tokenizerDir);
        var after = Evaluate(model, tokenizer, encoder, heldOutExamples, "evaluate after MAGIC", seed + 11);

        string metricsPath = Path.Combine(outputDir, "metrics.jsonl");
        var plots = MetricsPlots.Write(metricsPath, outputDir, new MetricsPlotOptions { EntropyTarget = settings.EntropyTarget });
        int steps = File.ReadLines(metricsPath).Count(l => !JsonDocument.Parse(l).RootElement.GetProperty("skipped").GetBoolean());

        var all = (Before: before.Single(s => s.DataSource == "all"), After: after.Single(s => s.DataSource == "all"));
        var summary = new SampleSummary
        {
            K = settings.EvalSamples,
            AvgAtKBefore = all.Before.AvgAtK,
            AvgAtKAfter = all.After.AvgAtK,
            PassAt1Before = all.Before.PassAt1,
            PassAt1After = all.After.PassAt1,
            AvgAtKBeforeByLevel = before.Where(s => s.DataSource != "all").ToDictionary(s => s.DataSource, s => s.AvgAtK),
            AvgAtKAfterByLevel = after.Where(s => s.DataSource != "all").ToDictionary(s => s.DataSource, s => s.AvgAtK),
            Steps = steps,
            SkippedSteps = skipped,
            WarmupLoss = warmupLoss,
            WarmupSeconds = warmupSeconds,
            RlSeconds = rlSeconds,
            WallSeconds = wall.Elapsed.TotalSeconds,
            Backend = backend.Description,
            Seed = seed,
            Quick = quick,
            Parameters = model.Weights.ParameterCount,
        };
        File.WriteAllText(Path.Combine(outputDir, "summary.json"), JsonSerializer.Serialize(summary, _json));
        PrintComparison(before, after, summary, plots);
        return summary;
    }

    private (double Loss, double Seconds) WarmUp(Qwen2Model model, Qwen2Tokenizer tokenizer, PromptEncoder encoder, Dictionary<int, IReadOnlyList<ArithmeticProblem>> train)
    {
        var timer = Stopwatch.StartNew();
        var rng = new SplitMix64(seed ^ 0x5F7);
        var weights = settings.WarmupLevelWeights;
        double totalWeight = weights.Sum();
        var solutionCache = new Dictionary<ArithmeticProblem, int[]>();
        int[] Solution(ArithmeticProblem p)
        {
            if (!solutionCache.TryGetValue(p, out var ids))
                solutionCache[p] = ids = [.. tokenizer.Encode(ArithmeticTask.WorkedSolution(p)), SampleTokenizerFiles.EndOfSentenceId];
            return ids;
        }
        using var trainer = new SupervisedTrainer(model);
        double loss = 0, smoothed = double.NaN;
        AnsiConsole.Progress().AutoClear(false).HideCompleted(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("warm-up (supervised)", maxValue: settings.WarmupSteps);
                for (int step = 0; step < settings.WarmupSteps; step++)
                {
                    var batch = new SupervisedExample[settings.WarmupBatch];
                    for (int i = 0; i < batch.Length; i++)
                    {
                        // Draw a level by the warm-up weights, then a problem of that level.
                        double u = (rng.Next() >> 11) * (1.0 / (1UL << 53)) * totalWeight;
                        int level = 1;
                        for (double acc = weights[0]; u >= acc && level < weights.Count; acc += weights[level], level++) { }
                        var problems = train[level];
                        var problem = problems[(int)rng.NextBelow((ulong)problems.Count)];
                        batch[i] = new SupervisedExample(encoder.Encode(ArithmeticTask.ToExample(problem)), Solution(problem));
                    }
                    double lr = SupervisedTrainer.CosineLearningRate(step, settings.WarmupSteps, settings.WarmupPeakLr, settings.WarmupFinalLr, warmup: Math.Min(50, settings.WarmupSteps / 10));
                    loss = trainer.Step(batch, lr);
                    smoothed = double.IsNaN(smoothed) ? loss : 0.95 * smoothed + 0.05 * loss;
                    task.Description = $"warm-up (supervised)  loss {smoothed:F3}";
                    task.Increment(1);
                }
            });
        AnsiConsole.MarkupLine($"[bold]warm-up[/]: {settings.WarmupSteps} steps of {settings.WarmupBatch} worked solutions, cross-entropy {smoothed:F3}, {timer.Elapsed.TotalSeconds:F0} s");
        return (smoothed, timer.Elapsed.TotalSeconds);
    }

    private IReadOnlyList<EvalScore> Evaluate(Qwen2Model model, Qwen2Tokenizer tokenizer, PromptEncoder encoder, IReadOnlyList<RlExample> examples, string label, ulong evalSeed)
    {
        var timer = Stopwatch.StartNew();
        int longest = examples.Max(e => encoder.Encode(e).Length);
        using var generator = new Qwen2Generator(model, Math.Min(512, examples.Count * settings.EvalSamples), longest + settings.EvalMaxNewTokens);
        var collector = new RolloutCollector(generator, encoder, new RewardRouter([new MathReward()]), PromptEncoder.StopTokens(tokenizer, model.Config.EosTokenIds));
        IReadOnlyList<EvalScore> scores = [];
        AnsiConsole.Progress().AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask($"{label} (avg@{settings.EvalSamples})", maxValue: examples.Count * settings.EvalSamples);
                scores = Evaluator.Run(collector, examples, settings.EvalSamples, new SamplingOptions(1f), settings.EvalMaxNewTokens, evalSeed,
                    new SynchronousProgress<EvalProgress>(p => task.Value = p.FinishedSamples)).Scores;
                task.Value = task.MaxValue;
            });
        var all = scores.Single(s => s.DataSource == "all");
        string levels = string.Join("  ", scores.Where(s => s.DataSource != "all").Select(s => $"{s.DataSource.Replace(ArithmeticTask.DataSourcePrefix, "L")} {s.AvgAtK:P0}"));
        AnsiConsole.MarkupLine($"[bold]{label}[/]: held-out avg@{settings.EvalSamples} [bold]{all.AvgAtK:P1}[/] (pass@1 {all.PassAt1:P1})  {levels}  ({timer.Elapsed.TotalSeconds:F0} s)");
        return scores;
    }

    /// <summary>MAGIC on all levels; returns the number of skipped step attempts.</summary>
    private int Train(Qwen2Model model, PromptEncoder encoder, string tokenizerDir, string warmupDir, Dictionary<int, IReadOnlyList<ArithmeticProblem>> train)
    {
        var config = new TrainingConfig
        {
            Model = warmupDir,
            TrainFiles = [Path.Combine(outputDir, "data", "train.jsonl")],
            OutputDir = outputDir,
            Seed = seed,
            Stages = settings.Stages,
            LearningRate = settings.LearningRate,
            EntropyTarget = settings.EntropyTarget,
            EntropyDelta = settings.EntropyDelta,
            EntropyCoefMax = settings.EntropyCoefMax,
            CheckpointEvery = 100,
            KeepCheckpoints = 1,
            ValidateEvery = int.MaxValue,
            RolloutBatch = 512,
            MicroBatchTokens = 16384,
        };
        config.Validate("the sample's schedule");
        File.Delete(Path.Combine(outputDir, "metrics.jsonl"));
        var examples = ArithmeticTask.ToExamples(train.Values.SelectMany(p => p));
        using var run = new TrainingRun(config, model, encoder, tokenizerDir, new RewardRouter([new MathReward()]), examples, [], TextWriter.Null);
        int skipped = 0, done = 0;
        var recent = new Queue<double>();
        AnsiConsole.Progress().AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("MAGIC", maxValue: config.TotalSteps);
                run.StepCompleted += m =>
                {
                    if (m.Skipped)
                    {
                        skipped++;
                        return;
                    }
                    done++;
                    recent.Enqueue(m.RewardMean);
                    if (recent.Count > 20) recent.Dequeue();
                    task.Description = $"MAGIC stage {m.Stage}/{config.Stages.Count}  reward {recent.Average():F3}  entropy {m.Entropy:F3}  c {m.EntropyCoefficient:0.0e0}";
                    task.Value = done;
                };
                run.Run();
            });
        AnsiConsole.MarkupLine($"[bold]MAGIC[/]: {done} steps in {config.Stages.Count} stages (max response {string.Join(" → ", config.Stages.Select(s => s.MaxResponseLength))} tokens), {skipped} attempts skipped by rejection sampling, last reward {(recent.Count > 0 ? recent.Average() : 0):F3}");
        return skipped;
    }

    private static void SaveCheckpoint(Qwen2Model model, string dir, string tokenizerDir)
    {
        Qwen2ModelFiles.Save(model, dir);
        foreach (var file in Directory.GetFiles(tokenizerDir)) File.Copy(file, Path.Combine(dir, Path.GetFileName(file)), overwrite: true);
    }

    private void PrintComparison(IReadOnlyList<EvalScore> before, IReadOnlyList<EvalScore> after, SampleSummary summary, IReadOnlyList<string> plots)
    {
        var table = new Table().Title($"held-out avg@{settings.EvalSamples}, before vs after MAGIC").AddColumns("data", "problems", "warm-up", "after MAGIC", "change");
        foreach (var b in before)
        {
            var a = after.Single(s => s.DataSource == b.DataSource);
            double delta = (a.AvgAtK - b.AvgAtK) * 100;
            table.AddRow(b.DataSource, b.Problems.ToString(System.Globalization.CultureInfo.InvariantCulture), $"{b.AvgAtK:P1}", $"{a.AvgAtK:P1}",
                delta >= 0 ? $"[green]+{delta:F1}[/]" : $"[red]{delta:F1}[/]");
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine($"[bold]done[/] in {summary.WallSeconds:F0} s: summary.json, metrics.jsonl, {plots.Count} plots and the final checkpoint ([grey]final/[/], usable by `or1 generate` / `or1 eval`) in [grey]{Markup.Escape(outputDir)}[/]");
    }

}

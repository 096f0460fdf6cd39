using System.Text.Json;
using OR1.Model;
using OR1.Native.Cpu;
using OR1.Runner.Cli;
using OR1.Runner.Commands;
using OR1.Tests.Model;

namespace OR1.Tests.Runner;

/// <summary>`or1 train`, `or1 eval` and `or1 reward` through their command entry points, with the real math verifier.</summary>
public sealed class TrainEvalRewardCommandTests
{
    private TinyTokenizerFiles _model = null!;
    private string _root = null!;

    [OneTimeSetUp]
    public void Write()
    {
        _model = TinyTokenizerFiles.Create();
        using (var backend = new CpuBackend(threads: 2))
        using (var model = new Qwen2Model(backend, TinyModels.Config(tied: true, vocab: TinyTokenizerFiles.VocabSize) with { EosTokenIds = [TinyTokenizerFiles.EndOfSentenceId] }))
        {
            TinyModels.Randomize(model.Weights, 8);
            Qwen2ModelFiles.Save(model, _model.Directory);
        }
        _root = Path.Combine(Path.GetTempPath(), "or1-cli-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_root);
        // Answers are single digits: a random model's text ends in a digit often enough (the verifier falls
        // back to the last number) that groups of 6 have mixed rewards.
        var rows = Enumerable.Range(0, 6).Select(i => JsonSerializer.Serialize(new
        {
            data_source = i < 3 ? "toy-a" : "toy-b",
            prompt = new[] { new { role = "user", content = $"what is {i} + 0?" } },
            ability = "math",
            reward_model = new { ground_truth = JsonSerializer.Serialize(new[] { (i % 3).ToString(System.Globalization.CultureInfo.InvariantCulture) }), style = "rule" },
            extra_info = new { index = i },
        }));
        File.WriteAllLines(Path.Combine(_root, "data.jsonl"), rows);
    }

    [OneTimeTearDown]
    public void Clean()
    {
        _model?.Dispose();
        if (_root is not null && Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    [Test]
    public void TrainRunsATwoStageConfigEndToEnd()
    {
        string config = Path.Combine(_root, "train.json");
        File.WriteAllText(config, $$"""
            {
              // relative paths resolve against this file's folder
              "model": "{{_model.Directory}}",
              "train_files": ["data.jsonl"],
              "validation_files": ["data.jsonl"],
              "output_dir": "run",
              "seed": 4,
              "learning_rate": 0.001,
              "zero_reward_for_truncated": false,
              "stages": [
                {"steps": 2, "max_response_length": 8, "prompts_per_step": 3, "prompts_per_mini_batch": 3, "group_size": 6},
                {"steps": 1, "max_response_length": 12, "prompts_per_step": 2, "prompts_per_mini_batch": 1, "group_size": 6}
              ],
              "checkpoint_every": 2,
              "validate_every": 3,
              "validation_k": 2,
              "validation_temperatures": [1.0]
            }
            """);
        Assert.That(TrainCommand.Run(config, resume: null), Is.Zero);
        string run = Path.Combine(_root, "run");
        var metrics = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).Where(m => !m.GetProperty("skipped").GetBoolean()).ToArray();
        Assert.That(metrics, Has.Length.EqualTo(3));
        foreach (var m in metrics)
        {
            // Recompute (the default): the sampler's log-probs are compared with the trainer's on every kept token; on the
            // Cpu backend the rollout engine's log-probs are the trainer's forward's bit for bit, so they differ by nothing.
            Assert.That(m.GetProperty("old_logprobs").GetString(), Is.EqualTo("recompute"));
            Assert.That(m.GetProperty("sampler_log_prob_diff_tokens").GetInt32(), Is.EqualTo(m.GetProperty("kept_tokens").GetInt32()));
            Assert.That(m.GetProperty("sampler_log_prob_diff_max").GetDouble(), Is.Zero, "on-policy: the engine's log-probs are the trainer's");
            Assert.That(m.GetProperty("generate_tokens_per_second").GetDouble(), Is.GreaterThan(0));
            Assert.That(m.GetProperty("update_tokens_per_second").GetDouble(), Is.GreaterThan(0));
            // The rollout engine's numbers: rates, the decode batch's occupancy, no pre-emption with the default cache.
            Assert.That(m.GetProperty("decode_tokens_per_second").GetDouble(), Is.GreaterThan(0));
            Assert.That(m.GetProperty("prefill_tokens_per_second").GetDouble(), Is.GreaterThan(0));
            Assert.That(m.GetProperty("rollout_occupancy").GetDouble(), Is.InRange(0.01, 1.0));
            Assert.That(m.GetProperty("rollout_occupancy_while_queued").GetDouble(), Is.EqualTo(1.0));
            Assert.That(m.GetProperty("rollout_preemptions").GetInt32(), Is.Zero);
        }
        // Stage 2: 2 prompts in mini-batches of 1 prompt, over the groups rejection sampling kept.
        Assert.That(metrics[2].GetProperty("optimizer_steps").GetInt32(), Is.EqualTo(Math.Min(2, metrics[2].GetProperty("kept_groups").GetInt32())));
        Assert.That(metrics[0].GetProperty("optimizer_steps").GetInt32(), Is.EqualTo(1), "stage 1: one mini-batch per step");
        Assert.That(File.ReadAllLines(Path.Combine(run, "validation.jsonl")), Is.Not.Empty);
        Assert.That(Directory.GetDirectories(Path.Combine(run, "checkpoints"), "step-*").Select(Path.GetFileName), Is.EquivalentTo(new[] { "step-000002", "step-000003" }));

        // The final checkpoint is a usable model folder for the other commands.
        string checkpoint = Path.Combine(run, "checkpoints", "step-000003");
        Assert.That(EvalCommand.Run(checkpoint, Path.Combine(_root, "data.jsonl"), 2, new OR1.Native.SamplingOptions(1f), 6, 1, 8, Path.Combine(_root, "eval.jsonl"), "cpu"), Is.Zero);
        var evalLines = File.ReadAllLines(Path.Combine(_root, "eval.jsonl"));
        Assert.That(evalLines, Has.Length.EqualTo(12));
    }

    [Test]
    public void ResumeOfAFolderWithoutCheckpointsIsReported()
    {
        string config = Path.Combine(_root, "resume.json");
        File.WriteAllText(config, $$"""{"model": "{{_model.Directory}}", "train_files": ["data.jsonl"], "output_dir": "r", "stages": [{"steps": 1, "max_response_length": 4, "prompts_per_step": 2, "prompts_per_mini_batch": 2, "group_size": 2}]}""");
        Assert.That(() => TrainCommand.Run(config, Path.Combine(_root, "nothing-here")), Throws.TypeOf<CliException>().With.Message.Contains("--resume"));
    }

    [Test]
    public void TrainWithSamplerOldLogProbs_AndAStalledRunEndsWithAClearError()
    {
        string Config(string name, string data) => $$"""
            {
              "model": "{{_model.Directory}}", "train_files": ["{{data}}"], "output_dir": "{{name}}", "seed": 4, "zero_reward_for_truncated": false,
              "stages": [{"steps": 1, "max_response_length": 8, "prompts_per_step": 3, "prompts_per_mini_batch": 3, "group_size": 6}]
            }
            """;
        string sampler = Path.Combine(_root, "sampler.json");
        File.WriteAllText(sampler, Config("sampler-run", "data.jsonl"));
        Assert.That(TrainCommand.Run(sampler, resume: null, oldLogProbs: OR1.Grpo.Training.OldLogProbSource.Sampler), Is.Zero);
        var trained = File.ReadAllLines(Path.Combine(_root, "sampler-run", "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).Last();
        Assert.That(trained.GetProperty("old_logprobs").GetString(), Is.EqualTo("sampler"));
        if (trained.GetProperty("sampler_log_prob_diff_tokens").GetInt32() > 0)
            Assert.That(trained.GetProperty("sampler_log_prob_diff_max").GetDouble(), Is.Zero, "the sampler's log-probs as log p_old are the trainer's exactly");

        // No response can ever be right: every group is all-zero, every step is skipped, and after 64 the run stops.
        string impossible = Path.Combine(_root, "impossible.jsonl");
        File.WriteAllLines(impossible, Enumerable.Range(0, 3).Select(i =>
            $$$"""{"data_source": "toy", "prompt": [{"role": "user", "content": "what is {{{i}}} + 0?"}], "ability": "math", "reward_model": {"ground_truth": "-987654", "style": "rule"}, "extra_info": {"index": {{{i}}}}}"""));
        string stalled = Path.Combine(_root, "stalled.json");
        File.WriteAllText(stalled, Config("stalled-run", "impossible.jsonl"));
        Assert.That(() => TrainCommand.Run(stalled, resume: null), Throws.TypeOf<CliException>()
            .With.Message.Contains("64 consecutive steps had no group with mixed rewards").And.Message.Contains("metrics.jsonl"));
        Assert.That(File.ReadAllLines(Path.Combine(_root, "stalled-run", "metrics.jsonl")), Has.Length.EqualTo(64), "every step's metrics were written");
    }

    [Test]
    public void RewardScoresEachLineWithAReason()
    {
        string input = Path.Combine(_root, "responses.jsonl");
        File.WriteAllLines(input,
        [
            """{"response": "<think>2+2</think> The answer is \\boxed{4}.", "ground_truth": "[\"4\"]", "ability": "math"}""",
            """{"response": "<think>\\boxed{4}</think> so \\boxed{5}", "ground_truth": "4", "ability": "math"}""",
            """{"response": "\\boxed{\\frac{1}{2}}", "ground_truth": ["0.5"], "ability": "math", "truncated": true}""",
        ]);
        string output = Path.Combine(_root, "scored.jsonl");
        Assert.That(RewardCommand.Run(input, output), Is.Zero);
        var scored = File.ReadAllLines(output).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.That(scored.Select(s => s.GetProperty("reward").GetDouble()), Is.EqualTo(new[] { 1.0, 0.0, 0.0 }));
        Assert.That(scored[1].GetProperty("reason").GetString(), Does.Contain("5"), "only the text after </think> is graded");
        Assert.That(scored[2].GetProperty("reason").GetString(), Does.Contain("truncated"));
        Assert.That(scored[0].GetProperty("ability").GetString(), Is.EqualTo("math"), "input fields are kept");
        Assert.That(File.ReadAllText(output), Does.Contain("<think>2+2</think>"), "text is written as itself, so grep finds it (not \\u003C, \\u002B)");
    }

    [Test]
    public void RewardWithUndecodableGroundTruthNamesTheLine()
    {
        string input = Path.Combine(_root, "bad-responses.jsonl");
        File.WriteAllLines(input, ["""{"response": "x", "ground_truth": "4", "ability": "math"}""", """{"response": "x", "ground_truth": {"weird": 1}, "ability": "code"}"""]);
        Assert.That(() => RewardCommand.Run(input, Path.Combine(_root, "never.jsonl")),
            Throws.TypeOf<CliException>().With.Message.Contains("line 2").And.Message.Contains("ground_truth"));
        Assert.That(File.Exists(Path.Combine(_root, "never.jsonl")), Is.False);
    }
}

using OR1.Grpo.Training;
using OR1.Runner.Cli;
using OR1.Runner.Sample;

namespace OR1.Tests.Training;

/// <summary>
/// Errors of `or1 train --config FILE` (and `or1 sample --config FILE`) in the config's own words: each names
/// the file, the key with its path, the line (and column) and what was expected, for unknown keys (with the
/// nearest known key), values of the wrong kind, malformed JSON and missing stage fields; a valid config with
/// comments and trailing commas still loads, with relative paths resolved against its folder.
/// </summary>
public sealed class TrainingConfigErrorTests
{
    private string _root = null!;

    [SetUp]
    public void CreateFolder()
    {
        _root = Path.Combine(Path.GetTempPath(), "or1-config-errors-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_root);
    }

    [TearDown]
    public void DeleteFolder()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private const string Stage = """{"steps": 2, "max_response_length": 8, "prompts_per_step": 4, "prompts_per_mini_batch": 2, "group_size": 4}""";

    /// <summary>A valid config of eight lines, <paramref name="line5"/> as its 5th line (a key, ending with a comma).</summary>
    private static string ConfigWith(string line5) => $$"""
        {
          "model": "model",
          "train_files": ["data/train.jsonl"],
          "output_dir": "out",
          {{line5}}
          "stages": [{{Stage}}],
          "seed": 3
        }
        """;

    private string Write(string json, string name = "config.json")
    {
        string path = Path.Combine(_root, name);
        File.WriteAllText(path, json);
        return path;
    }

    /// <summary>micro_batch_tokens takes a count or "auto" (the memory planner's budget); recompute is a flag; other text is refused.</summary>
    [Test]
    public void MicroBatchTokensIsACountOrAutoAndRecomputeIsAFlag()
    {
        var auto = TrainingConfig.Load(Write(ConfigWith("\"micro_batch_tokens\": \"auto\", \"recompute\": true,")));
        Assert.That(auto.MicroBatchTokens, Is.EqualTo(TokensOrAutoConverter.Auto));
        Assert.That(auto.Recompute, Is.True);
        Assert.That(auto.MagicOptions(auto.Stages[0]).Recompute, Is.True, "the trainer's options carry it");
        Assert.That(TrainingConfig.Load(Write(ConfigWith("\"micro_batch_tokens\": 4096,"), "count.json")).MicroBatchTokens, Is.EqualTo(4096));
        string message = LoadError(Write(ConfigWith("\"micro_batch_tokens\": \"lots\","), "bad.json"));
        Assert.That(message, Does.Contain("micro_batch_tokens").And.Contain("\"auto\""));
    }

    private static string LoadError(string path)
    {
        var e = Assert.Throws<TrainingConfigException>(() => TrainingConfig.Load(path))!;
        TestContext.Out.WriteLine(e.Message);
        Assert.That(e.Message, Does.StartWith(path), "the message names the file first");
        Assert.That(e.FilePath, Is.EqualTo(path));
        return e.Message;
    }

    [Test]
    public void UnknownKeyNamesTheLineAndSuggestsTheNearestKey()
    {
        string path = Write("""
            {
              "model": "m",
              "learning_rat": 1e-6,
              "train_files": ["x.jsonl"], "output_dir": "o", "stages": []
            }
            """);
        string message = LoadError(path);
        Assert.That(message, Does.Contain("config.json line 3, column 3: unknown key 'learning_rat': did you mean 'learning_rate'?"));
        Assert.That(message, Does.Not.Contain(".NET").And.Not.Contain("OR1.Grpo"));
    }

    [Test]
    public void UnknownKeyInAStageIsCheckedAgainstTheStageKeys()
    {
        string path = Write($$"""
            {
              "model": "m", "train_files": ["x.jsonl"], "output_dir": "o",
              "stages": [
                {{Stage}},
                {"steps": 2, "max_response_length": 8, "prompts_per_step": 4, "prompts_per_mini_batch": 2,
                 "grup_size": 4}
              ]
            }
            """);
        string message = LoadError(path);
        Assert.That(message, Does.Contain("line 6"));
        Assert.That(message, Does.Contain("unknown key 'stages[1].grup_size': did you mean 'group_size'?"));
    }

    [Test]
    public void UnknownKeyFarFromEveryKeyListsTheKnownKeys()
    {
        string message = LoadError(Write(ConfigWith("\"banana\": 1,")));
        Assert.That(message, Does.Contain("line 5").And.Contain("unknown key 'banana'"));
        Assert.That(message, Does.Not.Contain("did you mean"));
        Assert.That(message, Does.Contain("learning_rate").And.Contain("loss_aggregation"), "the known keys are listed");
    }

    [Test]
    public void StageKeyAtTheTopLevelSaysWhereItBelongs()
    {
        string message = LoadError(Write(ConfigWith("\"prompts_per_step\": 8,")));
        Assert.That(message, Does.Contain("line 5").And.Contain("unknown key 'prompts_per_step'").And.Contain("belongs in stages[i]"));
    }

    [Test]
    public void KeyInAnotherCaseConventionIsRecognised()
    {
        string message = LoadError(Write(ConfigWith("\"learningRate\": 1e-6,")));
        Assert.That(message, Does.Contain("line 5").And.Contain("unknown key 'learningRate': did you mean 'learning_rate'?"));
    }

    [TestCase("\"learning_rate\": \"1e-6\",", "'learning_rate' must be a number, not a string (\"1e-6\")")]
    [TestCase("\"train_files\": \"data/train.jsonl\",", "'train_files' must be a list of file paths, not a string (\"data/train.jsonl\")")]
    [TestCase("\"validation_files\": [\"a.jsonl\", 3],", "'validation_files' must be a list of file paths, but validation_files[1] is 3")]
    [TestCase("\"seed\": -1,", "'seed' must be a non-negative integer, not -1")]
    [TestCase("\"seed\": 1.5,", "'seed' must be a non-negative integer, not 1.5")]
    [TestCase("\"rollout_batch\": 3000000000,", "'rollout_batch' must be an integer, not 3000000000 (out of range)")]
    [TestCase("\"loss_aggregation\": \"token_men\",", "'loss_aggregation' must be one of: token_mean, verl_compat (not \"token_men\"; did you mean 'token_mean'?)")]
    [TestCase("\"loss_aggregation\": 1,", "'loss_aggregation' must be one of: token_mean, verl_compat (not 1)")]
    [TestCase("\"old_logprobs\": \"vllm\",", "'old_logprobs' must be one of: recompute, sampler (not \"vllm\")")]
    [TestCase("\"zero_reward_for_truncated\": \"yes\",", "'zero_reward_for_truncated' must be true or false, not a string (\"yes\")")]
    [TestCase("\"validation_max_new_tokens\": 12.5,", "'validation_max_new_tokens' must be an integer or null, not 12.5")]
    [TestCase("\"validation_temperatures\": [0.6, \"1.0\"],", "'validation_temperatures' must be a list of numbers, but validation_temperatures[1] is a string (\"1.0\")")]
    [TestCase("\"difficulty_base_model\": 7,", "'difficulty_base_model' must be a string or null, not 7")]
    [TestCase("\"device\": null,", "'device' must be a string, not null")]
    public void WrongKindOfValueSaysWhatIsExpected(string line5, string expected)
    {
        string message = LoadError(Write(ConfigWith(line5)));
        Assert.That(message, Does.Contain("config.json line 5, column "));
        Assert.That(message, Does.EndWith(expected));
    }

    [Test]
    public void ANegativeKvCacheMemoryIsRefusedByName()
    {
        string message = LoadError(Write(ConfigWith("\"kv_cache_memory_bytes\": -5,")));
        Assert.That(message, Does.Contain("\"kv_cache_memory_bytes\" must be 0 (sized for rollout_batch) or a positive byte count"));
    }

    [TestCase("\"grad_bucket_elements\": 100,", "is 100; it must be a positive multiple of 64")]
    [TestCase("\"grad_bucket_elements\": 0,", "is 0; it must be a positive multiple of 64")]
    public void AGradientBucketThatIsNotAMultipleOf64IsRefusedByName(string line5, string expected)
    {
        string message = LoadError(Write(ConfigWith(line5)));
        Assert.That(message, Does.Contain("config.json line 5, column ").And.Contain("\"grad_bucket_elements\" " + expected));
    }

    [TestCase("\"overlap_grad_reduce\": true,", true)]
    [TestCase("\"overlap_grad_reduce\": null,", null)]
    public void OverlapGradReduceIsAFlagOrNullForTheDefault(string line5, bool? expected)
    {
        var config = TrainingConfig.Load(Write(ConfigWith(line5)));
        Assert.That(config.OverlapGradReduce, Is.EqualTo(expected));
        Assert.That(config.MagicOptions(config.Stages[0]).OverlapGradientReduction, Is.EqualTo(expected));
    }

    [Test]
    public void StagesThatAreNotAListOfStageObjects()
    {
        string path = Write("""
            {"model": "m", "train_files": ["x.jsonl"], "output_dir": "o",
             "stages": {"steps": 1}}
            """);
        Assert.That(LoadError(path), Does.Contain("line 2, column 12: 'stages' must be a list of stage objects, not an object"));

        path = Write("""
            {"model": "m", "train_files": ["x.jsonl"], "output_dir": "o",
             "stages": [
               4]}
            """);
        Assert.That(LoadError(path), Does.Contain("line 3, column 4: 'stages' must be a list of stage objects, but stages[0] is 4"));
    }

    [Test]
    public void MissingStageFieldIsReportedAsMissingNotAsZero()
    {
        string path = Write("""
            {"model": "m", "train_files": ["x.jsonl"], "output_dir": "o",
             "stages": [
               {"steps": 2, "max_response_length": 8, "prompts_per_step": 4, "prompts_per_mini_batch": 2}
             ]}
            """);
        string message = LoadError(path);
        Assert.That(message, Does.Contain("line 3, column 4: 'stages[0].group_size' is missing"));
        Assert.That(message, Does.Contain("a stage needs steps, max_response_length, prompts_per_step, prompts_per_mini_batch and group_size"));
        Assert.That(message, Does.Not.Contain("is 0"));
    }

    [Test]
    public void RangeErrorsNameTheLineOfTheKey()
    {
        string path = Write("""
            {"model": "m", "train_files": ["x.jsonl"], "output_dir": "o",
             "stages": [{"steps": 1, "max_response_length": 8, "prompts_per_step": 4,
                         "prompts_per_mini_batch": 3, "group_size": 2}]}
            """);
        Assert.That(LoadError(path), Does.Contain("config.json line 3, column 14: \"stages[0].prompts_per_mini_batch\" is 3; it must divide prompts_per_step (4)"));
    }

    [TestCase("{\n  \"model\": \"m\"\n  \"output_dir\": \"o\"\n}", "line 3, column 3", "a ',' is missing before '\"'")]
    [TestCase("{\n  \"model\": \"m\",\n  \"stages\": [\n", "line 4, column 1", "the file ends before the list opened with '[' at line 3, column 13 is closed with ']'")]
    [TestCase("{\n  'model': \"m\"\n}", "line 2, column 3", "keys need double quotes")]
    [TestCase("{\n  \"model\": \"m\",\n  \"seed\": ,\n}", "line 3, column 11", "a value is missing before ','")]
    [TestCase("{\n  \"model\": \"C:\\models\\q\"\n}", "line 2, column 16", "'\\m' is not an escape a JSON string knows")]
    [TestCase("{\n  \"zero_reward_for_truncated\": tru\n}", "line 2, column 32", "'tru' is not a value; did you mean true?")]
    [TestCase("{\n  \"stages\": [1, 2}\n}", "line 2, column 18", "'}' does not close the '[' opened at line 2, column 13")]
    [TestCase("", "line 1, column 1", "the file is empty")]
    [TestCase("{\"model\": \"m\"} {}", "line 1, column 16", "there is more after the end of the config")]
    public void MalformedJsonGivesLineColumnAndPlainWords(string json, string where, string complaint)
    {
        string message = LoadError(Write(json));
        Assert.That(message, Does.Contain($"config.json {where}: not valid JSON: "));
        Assert.That(message, Does.Contain(complaint));
        Assert.That(message, Does.Not.Contain("LineNumber").And.Not.Contain("BytePositionInLine"));
    }

    [Test]
    public void RootThatIsNotAnObject()
    {
        Assert.That(LoadError(Write("[1, 2]")), Does.Contain("line 1, column 1: a config is a JSON object"));
        Assert.That(LoadError(Write("null")), Does.Contain("the file holds null"));
    }

    [Test]
    public void ValidConfigWithCommentsAndTrailingCommasLoadsWithPathsResolved()
    {
        string folder = Path.Combine(_root, "runs");
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, "train.json");
        File.WriteAllText(path, $$"""
            // a training config
            {
              "model": "../models/qwen", /* relative to this file */
              "train_files": ["data/a.jsonl", "data/b.parquet",],
              "validation_files": ["/abs/aime.jsonl"],
              "output_dir": "out",
              "stages": [{{Stage}}, {"steps": 1, "max_response_length": 16, "prompts_per_step": 4, "prompts_per_mini_batch": 4, "group_size": 2,},],
              "learning_rate": 2e-6,
              "loss_aggregation": "verl_compat",
              "old_logprobs": "sampler",
              "validation_max_new_tokens": null,
              "validation_temperatures": [1,],
              "zero_reward_for_truncated": false,
              "seed": 18446744073709551615,
            }
            """);
        var config = TrainingConfig.Load(path);
        Assert.That(config.Model, Is.EqualTo(Path.GetFullPath(Path.Combine(_root, "models", "qwen"))));
        Assert.That(config.TrainFiles, Is.EqualTo(new[] { Path.Combine(folder, "data", "a.jsonl"), Path.Combine(folder, "data", "b.parquet") }));
        Assert.That(config.ValidationFiles, Is.EqualTo(new[] { Path.GetFullPath("/abs/aime.jsonl") }));
        Assert.That(config.OutputDir, Is.EqualTo(Path.Combine(folder, "out")));
        Assert.That(config.Stages, Has.Count.EqualTo(2));
        Assert.That(config.Stages[1], Is.EqualTo(new StageConfig(1, 16, 4, 4, 2)));
        Assert.That(config.LearningRate, Is.EqualTo(2e-6));
        Assert.That(config.LossAggregation, Is.EqualTo(LossAggregation.VerlCompat));
        Assert.That(config.OldLogprobs, Is.EqualTo(OldLogProbSource.Sampler));
        Assert.That(config.ValidationMaxNewTokens, Is.Null);
        Assert.That(config.ValidationTemperatures, Is.EqualTo(new[] { 1f }));
        Assert.That(config.ZeroRewardForTruncated, Is.False);
        Assert.That(config.Seed, Is.EqualTo(ulong.MaxValue));
        Assert.That(config.ClipHigh, Is.EqualTo(0.2f), "a key left out keeps its default");
    }

    [Test]
    public void MissingFileIsStillReported()
    {
        string path = Path.Combine(_root, "nothing.json");
        Assert.That(LoadError(path), Is.EqualTo($"{path}: file not found"));
    }

    [Test]
    public void SampleScheduleReportsErrorsTheSameWay()
    {
        var defaults = SampleSettings.Quick;
        string path = Write("""
            {
              "stages": [{"steps": 1, "max_response_length": 8, "prompts_per_step": 4, "prompts_per_mini_batch": 2}],
              "entropy_targt": 0.05
            }
            """, "schedule.json");
        var e = Assert.Throws<CliException>(() => SampleSchedule.Apply(path, defaults))!;
        Assert.That(e.Message, Does.Contain("schedule.json line 2, column 14: 'stages[0].group_size' is missing"));

        File.WriteAllText(path, """
            {
              "stages": [{"steps": 1, "max_response_length": 8, "prompts_per_step": 4, "prompts_per_mini_batch": 2, "group_size": 2}],
              "entropy_targt": 0.05
            }
            """);
        e = Assert.Throws<CliException>(() => SampleSchedule.Apply(path, defaults))!;
        Assert.That(e.Message, Does.Contain("schedule.json line 3, column 3: unknown key 'entropy_targt': did you mean 'entropy_target'?"));

        File.WriteAllText(path, """{"learning_rate": "fast"}""");
        e = Assert.Throws<CliException>(() => SampleSchedule.Apply(path, defaults))!;
        Assert.That(e.Message, Does.Contain("schedule.json line 1, column 19: 'learning_rate' must be a number or null, not a string (\"fast\")"));

        File.WriteAllText(path, """
            {"warmup_steps":
               0}
            """);
        e = Assert.Throws<CliException>(() => SampleSchedule.Apply(path, defaults))!;
        Assert.That(e.Message, Does.Contain("schedule.json line 1, column 2: \"warmup_steps\" must be at least 1"));

        File.WriteAllText(path, """{"learning_rate": 3e-5, "entropy_target": 0.05, /* ok */}""");
        var settings = SampleSchedule.Apply(path, defaults);
        Assert.That(settings.LearningRate, Is.EqualTo(3e-5));
        Assert.That(settings.EntropyTarget, Is.EqualTo(0.05));
        Assert.That(settings.Stages, Is.EqualTo(defaults.Stages));
    }

    [TestCase("learning_rat", "learning_rate")]
    [TestCase("learningRate", "learning_rate")]
    [TestCase("Learning-Rate", "learning_rate")]
    [TestCase("gorup_size", "group_size")]
    [TestCase("entropy_coef_maximum", "entropy_coef_max")]
    [TestCase("banana", null)]
    [TestCase("lr", null)]
    public void SuggestionsAreOfferedOnlyWhenClose(string written, string? expected)
    {
        string[] known = ["learning_rate", "group_size", "entropy_coef_max", "seed", "steps"];
        Assert.That(KeySuggestion.Nearest(written, known), Is.EqualTo(expected));
    }
}

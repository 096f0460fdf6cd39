using System.Globalization;

namespace OR1.Grpo.Data;

/// <summary>The base models whose offline difficulty Skywork-OR1-RL-Data records (extra_info.model_difficulty keys).</summary>
public static class BaseModels
{
    /// <summary>DeepSeek-R1-Distill-Qwen-1.5B.</summary>
    public const string Qwen1_5B = "DeepSeek-R1-Distill-Qwen-1.5B";

    /// <summary>DeepSeek-R1-Distill-Qwen-7B (OR1-7B, OR1-Math-7B).</summary>
    public const string Qwen7B = "DeepSeek-R1-Distill-Qwen-7B";

    /// <summary>DeepSeek-R1-Distill-Qwen-32B (OR1-32B).</summary>
    public const string Qwen32B = "DeepSeek-R1-Distill-Qwen-32B";
}

/// <summary>Load-time filters of the recipe. Each returns the kept examples in input order and records the rest.</summary>
public static class DatasetFilters
{
    /// <summary>The lowest kept offline difficulty (0: every sample of the base model solved it).</summary>
    public const int MinDifficulty = 1;

    /// <summary>The highest kept offline difficulty (16: no sample of the base model solved it).</summary>
    public const int MaxDifficulty = 15;

    /// <summary>The recipe's maximum prompt length in tokens.</summary>
    public const int DefaultMaxPromptTokens = 2048;

    /// <summary>
    /// Offline difficulty filter for <paramref name="baseModel"/>: keeps examples with
    /// <paramref name="min"/> &lt;= model_difficulty[baseModel] &lt;= <paramref name="max"/> (1..15 by default).
    /// An example without that key is dropped (<see cref="SkipReason.NoDifficultyForModel"/>), as Skywork-OR1's
    /// own preprocessing does: the filter is meant for training data, which measures every row; apply it to
    /// eval files (which have no difficulties) and it keeps nothing.
    /// </summary>
    public static IReadOnlyList<RlExample> ByDifficulty(IEnumerable<RlExample> examples, string baseModel, DataLoadReport report,
        int min = MinDifficulty, int max = MaxDifficulty)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentException.ThrowIfNullOrWhiteSpace(baseModel);
        ArgumentNullException.ThrowIfNull(report);
        if (min > max) throw new ArgumentException($"empty difficulty range [{min}, {max}]", nameof(min));

        var kept = new List<RlExample>();
        foreach (var example in examples)
        {
            if (!example.ModelDifficulty.TryGetValue(baseModel, out int difficulty))
            {
                report.RecordSkip(new SkippedRow(null, null, example.Id, SkipReason.NoDifficultyForModel,
                    $"no model_difficulty for {baseModel}"));
            }
            else if (difficulty < min || difficulty > max)
            {
                report.RecordSkip(new SkippedRow(null, null, example.Id, SkipReason.DifficultyOutOfRange,
                    string.Create(CultureInfo.InvariantCulture, $"model_difficulty[{baseModel}] = {difficulty} outside [{min}, {max}]")));
            }
            else
            {
                kept.Add(example);
            }
        }
        return kept;
    }

    /// <summary>
    /// Drops examples whose templated prompt is longer than <paramref name="maxPromptTokens"/> tokens
    /// (<see cref="SkipReason.PromptTooLong"/>); a prompt of exactly the maximum is kept.
    /// </summary>
    /// <param name="examples">The examples, in order.</param>
    /// <param name="promptTokenCount">The number of tokens of the example's prompt after the chat template
    /// (generation prompt included), so this layer does not depend on the tokenizer.</param>
    /// <param name="maxPromptTokens">The maximum prompt length (the recipe's is 2048).</param>
    /// <param name="report">Receives the dropped examples.</param>
    public static IReadOnlyList<RlExample> ByPromptLength(IEnumerable<RlExample> examples, Func<RlExample, int> promptTokenCount,
        int maxPromptTokens, DataLoadReport report)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(promptTokenCount);
        ArgumentNullException.ThrowIfNull(report);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxPromptTokens);

        var kept = new List<RlExample>();
        foreach (var example in examples)
        {
            int tokens = promptTokenCount(example);
            if (tokens > maxPromptTokens)
            {
                report.RecordSkip(new SkippedRow(null, null, example.Id, SkipReason.PromptTooLong,
                    string.Create(CultureInfo.InvariantCulture, $"prompt has {tokens} tokens, more than {maxPromptTokens}")));
            }
            else
            {
                kept.Add(example);
            }
        }
        return kept;
    }
}

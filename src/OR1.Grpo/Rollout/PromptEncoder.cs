using System.Collections.Concurrent;
using OR1.Grpo.Data;
using OR1.Model.Tokenization;

namespace OR1.Grpo.Rollout;

/// <summary>
/// Turns an example's chat turns into prompt tokens with the model's chat template and the generation
/// prompt (docs/RECIPE.md: <c>&lt;｜begin▁of▁sentence｜&gt;&lt;｜User｜&gt;{problem}&lt;｜Assistant｜&gt;&lt;think&gt;\n</c>),
/// caching per example id since the same prompts return every epoch.
/// </summary>
public sealed class PromptEncoder(Qwen2Tokenizer tokenizer)
{
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);

    public Qwen2Tokenizer Tokenizer { get; } = tokenizer;

    /// <summary>The templated prompt of <paramref name="example"/> as token ids.</summary>
    public int[] Encode(RlExample example) => _cache.GetOrAdd(example.Id, _ =>
        Tokenizer.Encode(Tokenizer.Template.Apply(example.Prompt.Select(m => new ChatMessage(m.Role, m.Content)).ToArray(), addGenerationPrompt: true)).ToArray());

    /// <summary>Token ids that end a response: the tokenizer's EOS and the model config's eos ids.</summary>
    public static HashSet<int> StopTokens(Qwen2Tokenizer tokenizer, IEnumerable<int> configEos)
    {
        var stop = new HashSet<int>(configEos);
        if (tokenizer.EosId is { } eos) stop.Add(eos);
        return stop;
    }
}

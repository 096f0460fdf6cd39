using System.Collections.ObjectModel;
using System.Security.Cryptography;
using System.Text;

namespace OR1.Grpo.Data;

/// <summary>The two abilities of the RL data and the reward each one gets.</summary>
public static class Abilities
{
    /// <summary>Math problems: rewarded by comparing the boxed answer with <see cref="MathGroundTruth"/>.</summary>
    public const string Math = "math";

    /// <summary>Code problems: rewarded by running the tests of <see cref="CodeGroundTruth"/>.</summary>
    public const string Code = "code";

    /// <summary>
    /// The canonical name ("math" or "code") of an ability as written in a file, ignoring case and surrounding
    /// white space; null for anything else.
    /// </summary>
    public static string? Normalize(string? ability)
    {
        string? trimmed = ability?.Trim();
        if (string.Equals(trimmed, Math, StringComparison.OrdinalIgnoreCase)) return Math;
        if (string.Equals(trimmed, Code, StringComparison.OrdinalIgnoreCase)) return Code;
        return null;
    }
}

/// <summary>
/// One RL prompt with what its responses are checked against: a row of Skywork-OR1-RL-Data
/// (data_source, prompt, ability, reward_model.ground_truth, extra_info {index, model_difficulty, split}).
/// Collections compare by reference (record equality); compare examples by <see cref="Id"/>.
/// </summary>
public sealed record RlExample
{
    private static readonly IReadOnlyDictionary<string, int> NoDifficulty =
        new ReadOnlyDictionary<string, int>(new Dictionary<string, int>());

    /// <summary>Builds an example, checking that the ability and the ground truth agree.</summary>
    /// <exception cref="ArgumentException">empty prompt, unknown ability, or a ground truth of the other ability.</exception>
    public RlExample(
        string dataSource,
        IReadOnlyList<PromptMessage> prompt,
        string ability,
        GroundTruth groundTruth,
        long? index = null,
        IReadOnlyDictionary<string, int>? modelDifficulty = null,
        string? split = null)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(groundTruth);
        if (prompt.Count == 0) throw new ArgumentException("an RL example needs at least one prompt message", nameof(prompt));
        string canonical = Abilities.Normalize(ability)
            ?? throw new ArgumentException($"unknown ability '{ability}' (expected \"math\" or \"code\")", nameof(ability));
        bool matches = canonical == Abilities.Math ? groundTruth is MathGroundTruth : groundTruth is CodeGroundTruth;
        if (!matches) throw new ArgumentException($"a {canonical} example cannot have the ground truth {groundTruth}", nameof(groundTruth));

        DataSource = dataSource;
        Prompt = prompt;
        Ability = canonical;
        GroundTruth = groundTruth;
        Index = index;
        ModelDifficulty = modelDifficulty ?? NoDifficulty;
        Split = split;
    }

    /// <summary>The row's data_source (a benchmark or sub-dataset name, e.g. "test-math-aime24").</summary>
    public string DataSource { get; }

    /// <summary>The chat turns, untemplated; never empty.</summary>
    public IReadOnlyList<PromptMessage> Prompt { get; }

    /// <summary><see cref="Abilities.Math"/> or <see cref="Abilities.Code"/>.</summary>
    public string Ability { get; }

    /// <summary><see cref="MathGroundTruth"/> for math, <see cref="CodeGroundTruth"/> for code.</summary>
    public GroundTruth GroundTruth { get; }

    /// <summary>extra_info.index; null where the file has none (the AIME25 file).</summary>
    public long? Index { get; }

    /// <summary>
    /// extra_info.model_difficulty: the offline difficulty per base model (keys such as
    /// "DeepSeek-R1-Distill-Qwen-7B"), measured over 16 samples of that model, so 0 and 16 are the two extremes
    /// (solved by all samples / by none). Empty where the file has none.
    /// </summary>
    public IReadOnlyDictionary<string, int> ModelDifficulty { get; }

    /// <summary>extra_info.split ("train", "test"), or null.</summary>
    public string? Split { get; }

    /// <summary>True for math examples.</summary>
    public bool IsMath => Ability == Abilities.Math;

    /// <summary>True for code examples.</summary>
    public bool IsCode => Ability == Abilities.Code;

    /// <summary>
    /// A stable identifier: "{data_source}/{index}" when the row has an index, otherwise
    /// "{data_source}/sha256:{first 16 hex digits of SHA-256 over the prompt's roles and contents}". The same
    /// row gives the same Id on every machine and run; the copies made by the code x2 mix share it.
    /// </summary>
    public string Id => Index is long index
        ? $"{DataSource}/{index.ToString(System.Globalization.CultureInfo.InvariantCulture)}"
        : $"{DataSource}/sha256:{PromptHash(Prompt)}";

    /// <summary>The first user turn's content (the problem statement), or the first turn's content if none is "user".</summary>
    public string ProblemText => (Prompt.FirstOrDefault(m => m.Role == "user") ?? Prompt[0]).Content;

    /// <inheritdoc />
    public override string ToString() => $"{Id} ({Ability}, {Prompt.Count} message(s), {GroundTruth})";

    /// <summary>16 lowercase hex digits of SHA-256 over "role\u0000content\u0000" for every turn, UTF-8.</summary>
    private static string PromptHash(IReadOnlyList<PromptMessage> prompt)
    {
        var text = new StringBuilder();
        foreach (var message in prompt) text.Append(message.Role).Append('\0').Append(message.Content).Append('\0');
        byte[] hash = SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString()));
        return Convert.ToHexStringLower(hash, 0, 8);
    }
}

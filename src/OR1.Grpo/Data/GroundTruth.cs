using System.Text.Json.Nodes;

namespace OR1.Grpo.Data;

/// <summary>What a response is checked against: decoded from reward_model.ground_truth.</summary>
public abstract record GroundTruth;

/// <summary>Math: the accepted answer strings (any one matching scores 1).</summary>
public sealed record MathGroundTruth(IReadOnlyList<string> Answers) : GroundTruth
{
    /// <inheritdoc />
    public override string ToString() => $"math [{string.Join(", ", Answers)}]";
}

/// <summary>
/// Code: one test object, with keys whose value was null removed. Its keys say the format:
/// {import_prefix, test_code, entry_point} (LeetCode), {inputs, outputs, fn_name?} (stdin/stdout or
/// call-based), or {assert_case} (assert statements).
/// </summary>
public sealed record CodeGroundTruth(JsonObject Tests) : GroundTruth
{
    /// <summary>The keys present, which identify the test format.</summary>
    public IEnumerable<string> Keys => Tests.Select(p => p.Key);

    /// <inheritdoc />
    public override string ToString() => $"code {{{string.Join(", ", Keys)}}}";
}

using System.Diagnostics.CodeAnalysis;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace OR1.Grpo.Data;

/// <summary>
/// Decodes reward_model.ground_truth into a <see cref="GroundTruth"/>.
/// <para>
/// Math: the training set stores a JSON-encoded list of accepted answers (<c>["5"]</c>), the eval files a plain
/// answer (<c>204</c>, <c>336^\circ</c>). As in Skywork-OR1's preprocessing (json.loads, falling back to the raw
/// string): text that is not valid JSON is one answer as written (so <c>025</c>, which JSON rejects, stays
/// "025"); a JSON string is one answer; a JSON number or boolean is one answer spelled as in the text (<c>204</c>
/// stays "204", never "204.0"); a JSON array gives one answer per element, each a string or a number. An empty
/// answer, an empty array, null, an object, or an array holding anything else is undecodable.
/// </para>
/// <para>
/// Code: a JSON object, or a JSON string encoding one, either possibly wrapped in a list of one element. Keys
/// whose value is null or the empty string are removed (the reference keeps only truthy values, and an empty
/// fn_name would otherwise select the call-based format). What remains must be exactly one format:
/// {test_code, entry_point, import_prefix?} (strings), {inputs, outputs, fn_name?} (inputs and outputs arrays of
/// one length, at least one case; fn_name a string), or {assert_case} (a non-empty array of strings). Any other
/// key, a mix of formats, or a value of the wrong type is undecodable.
/// </para>
/// </summary>
public static class GroundTruthDecoder
{
    private static readonly string[] LeetCodeKeys = ["import_prefix", "test_code", "entry_point"];
    private static readonly string[] InputOutputKeys = ["inputs", "outputs", "fn_name"];
    private static readonly string[] AssertKeys = ["assert_case"];

    /// <summary>Decodes a ground truth stored as text (the parquet column's type), or throws.</summary>
    /// <exception cref="FormatException">the text does not decode for <paramref name="ability"/>; the message says why.</exception>
    public static GroundTruth Decode(string ability, string raw)
    {
        if (TryDecode(ability, raw, out var groundTruth, out var error)) return groundTruth;
        throw new FormatException($"cannot decode the {ability} ground truth: {error}");
    }

    /// <summary>Decodes a ground truth stored as text (the parquet column's type).</summary>
    /// <param name="ability">"math" or "code" (any case).</param>
    /// <param name="raw">reward_model.ground_truth as stored.</param>
    /// <param name="groundTruth">The decoded value when the result is true.</param>
    /// <param name="error">Why it did not decode when the result is false.</param>
    public static bool TryDecode(string? ability, string? raw,
        [NotNullWhen(true)] out GroundTruth? groundTruth, [NotNullWhen(false)] out string? error)
        => TryDecode(ability, raw is null ? null : JsonValue.Create(raw), out groundTruth, out error);

    /// <summary>
    /// Decodes a ground truth given as a JSON value, as a JSONL row may store it: a JSON string is decoded as
    /// stored text (see <see cref="TryDecode(string?, string?, out GroundTruth?, out string?)"/>); an array,
    /// number or object is taken as already decoded.
    /// </summary>
    public static bool TryDecode(string? ability, JsonNode? node,
        [NotNullWhen(true)] out GroundTruth? groundTruth, [NotNullWhen(false)] out string? error)
    {
        groundTruth = null;
        switch (Abilities.Normalize(ability))
        {
            case Abilities.Math:
                if (TryDecodeMath(node, out var answers, out error))
                {
                    groundTruth = new MathGroundTruth(answers);
                    return true;
                }
                return false;
            case Abilities.Code:
                if (TryDecodeCode(node, out var tests, out error))
                {
                    groundTruth = new CodeGroundTruth(tests);
                    return true;
                }
                return false;
            default:
                error = $"unknown ability '{ability}'";
                return false;
        }
    }

    private static bool TryDecodeMath(JsonNode? node, [NotNullWhen(true)] out IReadOnlyList<string>? answers, [NotNullWhen(false)] out string? error)
    {
        answers = null;
        if (node is null)
        {
            error = "the ground truth is null";
            return false;
        }
        if (TryGetString(node, out var raw))
        {
            string text = raw.Trim();
            if (text.Length == 0)
            {
                error = "the ground truth is empty";
                return false;
            }
            JsonNode? parsed;
            try
            {
                parsed = JsonNode.Parse(text);
            }
            catch (JsonException)
            {
                answers = [text]; // a plain answer: 336^\circ, 025, \frac{1}{2}
                error = null;
                return true;
            }
            if (parsed is not null && TryGetString(parsed, out var inner))
            {
                // A JSON string: exactly one answer (not decoded a second time).
                return SingleAnswer(inner, out answers, out error);
            }
            node = parsed;
        }

        switch (node)
        {
            case null:
                error = "the ground truth is JSON null";
                return false;
            case JsonArray array:
                if (array.Count == 0)
                {
                    error = "the list of accepted answers is empty";
                    return false;
                }
                var list = new List<string>(array.Count);
                for (int i = 0; i < array.Count; i++)
                {
                    if (!TryScalarAnswer(array[i], out var answer))
                    {
                        error = $"answer {i} of the list is {Describe(array[i])}, not a string or a number";
                        return false;
                    }
                    if (answer.Trim().Length == 0)
                    {
                        error = $"answer {i} of the list is empty";
                        return false;
                    }
                    list.Add(answer);
                }
                answers = list;
                error = null;
                return true;
            case JsonValue value when TryScalarAnswer(value, out var scalar):
                return SingleAnswer(scalar, out answers, out error);
            default:
                error = $"a math ground truth cannot be {Describe(node)}";
                return false;
        }
    }

    private static bool SingleAnswer(string answer, [NotNullWhen(true)] out IReadOnlyList<string>? answers, [NotNullWhen(false)] out string? error)
    {
        if (answer.Trim().Length == 0)
        {
            answers = null;
            error = "the ground truth is empty";
            return false;
        }
        answers = [answer];
        error = null;
        return true;
    }

    /// <summary>A string's value, or a number's or boolean's JSON spelling.</summary>
    private static bool TryScalarAnswer(JsonNode? node, [NotNullWhen(true)] out string? answer)
    {
        answer = null;
        if (node is not JsonValue value) return false;
        switch (value.GetValueKind())
        {
            case JsonValueKind.String:
                answer = value.GetValue<string>();
                return true;
            case JsonValueKind.Number:
            case JsonValueKind.True:
            case JsonValueKind.False:
                answer = value.ToJsonString();
                return true;
            default:
                return false;
        }
    }

    private static bool TryDecodeCode(JsonNode? node, [NotNullWhen(true)] out JsonObject? tests, [NotNullWhen(false)] out string? error)
    {
        tests = null;
        // Unwrap: JSON text -> value; a list of one -> its element. A few levels cover every stored variant
        // (an object, a string encoding one, either inside a list of one, a string encoding such a list).
        for (int depth = 0; depth < 6; depth++)
        {
            switch (node)
            {
                case null:
                    error = "the ground truth is null";
                    return false;
                case JsonObject obj:
                    return TryCodeTests(obj, out tests, out error);
                case JsonArray { Count: 1 } single:
                    node = single[0];
                    continue;
                case JsonArray array:
                    error = $"a code ground truth must be one test object, not a list of {array.Count}";
                    return false;
            }
            if (TryGetString(node, out var text))
            {
                try
                {
                    node = JsonNode.Parse(text);
                }
                catch (JsonException e)
                {
                    error = $"a code ground truth must be a JSON object; the text is not JSON ({e.Message})";
                    return false;
                }
                continue;
            }
            error = $"a code ground truth must be a JSON object, not {Describe(node)}";
            return false;
        }
        error = "a code ground truth nested too deeply in strings and lists";
        return false;
    }

    private static bool TryCodeTests(JsonObject obj, [NotNullWhen(true)] out JsonObject? tests, [NotNullWhen(false)] out string? error)
    {
        tests = null;
        var kept = new List<KeyValuePair<string, JsonNode>>();
        foreach (var (key, value) in obj)
        {
            if (value is null) continue;
            if (value is JsonValue v && v.GetValueKind() == JsonValueKind.String && v.GetValue<string>().Length == 0) continue;
            kept.Add(new(key, value));
        }
        if (kept.Count == 0)
        {
            error = "the code test object has no non-null keys";
            return false;
        }

        string[]? format = null;
        foreach (var candidate in new[] { LeetCodeKeys, InputOutputKeys, AssertKeys })
        {
            if (!kept.Any(p => candidate.Contains(p.Key))) continue;
            if (format is not null)
            {
                error = $"the keys {{{string.Join(", ", kept.Select(p => p.Key))}}} mix test formats";
                return false;
            }
            format = candidate;
        }
        if (format is null)
        {
            error = $"the keys {{{string.Join(", ", kept.Select(p => p.Key))}}} are no known test format";
            return false;
        }
        var unexpected = kept.Select(p => p.Key).Where(k => !format.Contains(k)).ToList();
        if (unexpected.Count > 0)
        {
            error = $"unexpected key(s) {{{string.Join(", ", unexpected)}}} beside {{{string.Join(", ", format.Where(k => kept.Any(p => p.Key == k)))}}}";
            return false;
        }

        var byKey = kept.ToDictionary(p => p.Key, p => p.Value);
        error = format == LeetCodeKeys ? CheckLeetCode(byKey)
            : format == InputOutputKeys ? CheckInputOutput(byKey)
            : CheckAssert(byKey);
        if (error is not null) return false;

        tests = new JsonObject();
        foreach (var (key, value) in kept) tests[key] = value.DeepClone();
        return true;
    }

    private static string? CheckLeetCode(Dictionary<string, JsonNode> keys)
    {
        foreach (var required in new[] { "test_code", "entry_point" })
        {
            if (!keys.ContainsKey(required)) return $"the LeetCode format needs '{required}'";
        }
        foreach (var key in LeetCodeKeys)
        {
            if (keys.TryGetValue(key, out var value) && !TryGetString(value, out _)) return $"'{key}' must be a string, not {Describe(value)}";
        }
        return null;
    }

    private static string? CheckInputOutput(Dictionary<string, JsonNode> keys)
    {
        if (!keys.TryGetValue("inputs", out var inputs)) return "the inputs/outputs format needs 'inputs'";
        if (!keys.TryGetValue("outputs", out var outputs)) return "the inputs/outputs format needs 'outputs'";
        if (inputs is not JsonArray inputList) return $"'inputs' must be a list, not {Describe(inputs)}";
        if (outputs is not JsonArray outputList) return $"'outputs' must be a list, not {Describe(outputs)}";
        if (inputList.Count == 0) return "'inputs' is empty: no test case";
        if (inputList.Count != outputList.Count) return $"{inputList.Count} inputs but {outputList.Count} outputs";
        if (keys.TryGetValue("fn_name", out var fnName) && !TryGetString(fnName, out _)) return $"'fn_name' must be a string, not {Describe(fnName)}";
        return null;
    }

    private static string? CheckAssert(Dictionary<string, JsonNode> keys)
    {
        var cases = keys["assert_case"];
        if (cases is not JsonArray list) return $"'assert_case' must be a list of strings, not {Describe(cases)}";
        if (list.Count == 0) return "'assert_case' is empty: no test case";
        for (int i = 0; i < list.Count; i++)
        {
            if (!TryGetString(list[i], out _)) return $"assert_case[{i}] must be a string, not {Describe(list[i])}";
        }
        return null;
    }

    private static bool TryGetString(JsonNode? node, [NotNullWhen(true)] out string? text)
    {
        if (node is JsonValue value && value.GetValueKind() == JsonValueKind.String)
        {
            text = value.GetValue<string>();
            return true;
        }
        text = null;
        return false;
    }

    private static string Describe(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "an object",
        JsonArray => "a list",
        _ => node.GetValueKind() switch
        {
            JsonValueKind.String => "a string",
            JsonValueKind.Number => "a number",
            JsonValueKind.True or JsonValueKind.False => "a boolean",
            _ => "null",
        },
    };
}

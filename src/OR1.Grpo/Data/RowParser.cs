using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace OR1.Grpo.Data;

/// <summary>
/// Turns one row, in the JSON shape both readers produce, into an <see cref="RlExample"/>, or records in the
/// report why the row is left out. Never throws for a bad row.
/// </summary>
internal static class RowParser
{
    /// <summary>The example, or null after recording the row as skipped.</summary>
    public static RlExample? Parse(JsonObject row, string file, long rowNumber, DataLoadReport report)
    {
        var example = TryParse(row, out var reason, out var detail);
        if (example is null) report.RecordSkip(new SkippedRow(file, rowNumber, null, reason, detail!));
        report.RecordRow(example is not null);
        return example;
    }

    private static RlExample? TryParse(JsonObject row, out SkipReason reason, out string? detail)
    {
        reason = default;
        detail = null;

        if (!TryGetString(row["data_source"], out var dataSource))
        {
            (reason, detail) = (SkipReason.MissingDataSource, "no data_source string");
            return null;
        }

        var promptNode = row["prompt"];
        if (promptNode is null)
        {
            (reason, detail) = (SkipReason.MissingPrompt, "no prompt");
            return null;
        }
        if (promptNode is not JsonArray promptList)
        {
            (reason, detail) = (SkipReason.BadPromptMessage, "prompt is not a list of {role, content}");
            return null;
        }
        if (promptList.Count == 0)
        {
            (reason, detail) = (SkipReason.EmptyPrompt, "prompt has no messages");
            return null;
        }
        var prompt = new List<PromptMessage>(promptList.Count);
        for (int i = 0; i < promptList.Count; i++)
        {
            if (promptList[i] is not JsonObject message
                || !TryGetString(message["role"], out var role) || role.Trim().Length == 0
                || !TryGetString(message["content"], out var content))
            {
                (reason, detail) = (SkipReason.BadPromptMessage, $"prompt message {i} has no role or no content string");
                return null;
            }
            prompt.Add(new PromptMessage(role, content));
        }
        if (prompt.All(m => m.Content.Trim().Length == 0))
        {
            (reason, detail) = (SkipReason.EmptyPrompt, "every prompt message is blank");
            return null;
        }

        TryGetString(row["ability"], out var rawAbility);
        string? ability = Abilities.Normalize(rawAbility);
        if (ability is null)
        {
            (reason, detail) = (SkipReason.UnknownAbility, rawAbility is null ? "no ability" : $"unknown ability '{rawAbility}'");
            return null;
        }

        var rewardModel = row["reward_model"] as JsonObject;
        var groundTruthNode = rewardModel?["ground_truth"];
        if (groundTruthNode is null)
        {
            (reason, detail) = (SkipReason.MissingGroundTruth, "no reward_model.ground_truth");
            return null;
        }
        if (!GroundTruthDecoder.TryDecode(ability, groundTruthNode, out var groundTruth, out var error))
        {
            (reason, detail) = (SkipReason.UndecodableGroundTruth, $"{ability} ground truth: {error}");
            return null;
        }

        long? index = null;
        Dictionary<string, int>? difficulty = null;
        string? split = null;
        var extraNode = row["extra_info"];
        if (extraNode is not null)
        {
            if (extraNode is not JsonObject extra)
            {
                (reason, detail) = (SkipReason.BadExtraInfo, "extra_info is not an object");
                return null;
            }
            if (!TryReadExtraInfo(extra, out index, out difficulty, out split, out var extraError))
            {
                (reason, detail) = (SkipReason.BadExtraInfo, extraError);
                return null;
            }
        }

        return new RlExample(dataSource, prompt, ability, groundTruth, index, difficulty, split);
    }

    private static bool TryReadExtraInfo(JsonObject extra, out long? index, out Dictionary<string, int>? difficulty,
        out string? split, [NotNullWhen(false)] out string? error)
    {
        index = null;
        difficulty = null;
        split = null;
        error = null;

        var indexNode = extra["index"];
        if (indexNode is not null)
        {
            if (TryGetInt64(indexNode, out long value)) index = value;
            else if (TryGetString(indexNode, out var text) && long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out value)) index = value;
            else
            {
                error = "extra_info.index is not an integer";
                return false;
            }
        }

        var difficultyNode = extra["model_difficulty"];
        if (difficultyNode is not null)
        {
            if (difficultyNode is not JsonObject perModel)
            {
                error = "extra_info.model_difficulty is not an object";
                return false;
            }
            difficulty = new Dictionary<string, int>();
            foreach (var (model, value) in perModel)
            {
                if (value is null) continue; // a struct column holds null for models a row was not measured on
                if (!TryGetInt64(value, out long level) || level < int.MinValue || level > int.MaxValue)
                {
                    error = $"extra_info.model_difficulty['{model}'] is not an integer";
                    return false;
                }
                difficulty[model] = (int)level;
            }
        }

        var splitNode = extra["split"];
        if (splitNode is not null)
        {
            if (!TryGetString(splitNode, out split))
            {
                error = "extra_info.split is not a string";
                return false;
            }
        }
        return true;
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

    /// <summary>An integral JSON number (3 or 3.0), whether parsed from text or built from a CLR value.</summary>
    private static bool TryGetInt64(JsonNode? node, out long value)
    {
        value = 0;
        if (node is not JsonValue json || json.GetValueKind() != JsonValueKind.Number) return false;
        if (json.TryGetValue(out long l)) { value = l; return true; }
        if (json.TryGetValue(out JsonElement element))
        {
            if (element.TryGetInt64(out value)) return true;
            if (element.TryGetDouble(out double d) && IsIntegral(d)) { value = (long)d; return true; }
            return false;
        }
        if (json.TryGetValue(out double dbl) && IsIntegral(dbl)) { value = (long)dbl; return true; }
        return false;
    }

    private static bool IsIntegral(double d) => Math.Floor(d) == d && d >= long.MinValue && d < 9.2233720368547758e18;
}

using System.Text.Json;

namespace OR1.Runner.Cli;

/// <summary>Reads a JSON Lines file, one object per non-empty line, with the file and line in every error.</summary>
public static class JsonLines
{
    public static IEnumerable<(int Line, JsonElement Value)> Read(string path)
    {
        if (!File.Exists(path)) throw new CliException($"{path}: file not found");
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonElement value;
            try
            {
                using var document = JsonDocument.Parse(line);
                value = document.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new CliException($"{path} line {lineNumber}: not valid JSON ({e.Message})");
            }
            if (value.ValueKind != JsonValueKind.Object) throw new CliException($"{path} line {lineNumber}: expected a JSON object, got {value.ValueKind}");
            yield return (lineNumber, value);
        }
    }

    /// <summary>An array of integers, or null when the property is absent.</summary>
    public static int[]? IntArray(JsonElement obj, string property, string path, int line)
    {
        if (!obj.TryGetProperty(property, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Array) throw new CliException($"{path} line {line}: \"{property}\" must be an array of token ids");
        var result = new int[value.GetArrayLength()];
        int i = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out result[i]))
                throw new CliException($"{path} line {line}: \"{property}\"[{i}] is not an integer token id");
            i++;
        }
        return result;
    }

    /// <summary>A string property, or null when absent.</summary>
    public static string? String(JsonElement obj, string property, string path, int line)
    {
        if (!obj.TryGetProperty(property, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.String) throw new CliException($"{path} line {line}: \"{property}\" must be a string");
        return value.GetString();
    }
}

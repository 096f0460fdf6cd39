using System.Text.Json;
using OR1.Model;

namespace OR1.Grpo.Training;

/// <summary>
/// JSON settings for metrics and other JSONL outputs: snake_case names, as the Python tools these are compared with
/// use, and text written as itself (<see cref="ReadableJson"/>).
/// </summary>
public static class MetricsJson
{
    /// <summary>Indented, for a single metrics.json.</summary>
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        Encoder = ReadableJson.Encoder,
    };

    /// <summary>One object per line, for metrics.jsonl.</summary>
    public static readonly JsonSerializerOptions Lines = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = ReadableJson.Encoder,
    };
}

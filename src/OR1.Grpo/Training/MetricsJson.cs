using System.Text.Json;

namespace OR1.Grpo.Training;

/// <summary>JSON settings for metrics files: snake_case names, as the Python tools these are compared with use.</summary>
public static class MetricsJson
{
    /// <summary>Indented, for a single metrics.json.</summary>
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
    };

    /// <summary>One object per line, for metrics.jsonl.</summary>
    public static readonly JsonSerializerOptions Lines = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
    };
}

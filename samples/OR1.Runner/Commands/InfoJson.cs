using System.Text.Json;
using System.Text.Json.Serialization;
using OR1.Model;

namespace OR1.Runner.Commands;

/// <summary><c>or1 info --json</c>: the <see cref="InfoReport"/> as one JSON object with snake_case names (the GPU check saves it as info.json).</summary>
public static class InfoJson
{
    private static readonly JsonSerializerOptions s_options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        Encoder = ReadableJson.Encoder,
        // A backend that computes NaN has a NaN difference, which must print rather than throw.
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter() },
    };

    public static string Serialize(InfoReport report) => JsonSerializer.Serialize(report, s_options);
}

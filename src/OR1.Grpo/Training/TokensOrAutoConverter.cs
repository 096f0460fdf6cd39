using System.Text.Json;
using System.Text.Json.Serialization;

namespace OR1.Grpo.Training;

/// <summary>
/// A token count in a training config that may also be <c>"auto"</c> (read as 0: the memory planner picks it), as
/// <c>micro_batch_tokens: auto</c>.
/// </summary>
public sealed class TokensOrAutoConverter : JsonConverter<int>
{
    public const int Auto = 0;

    public override int Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.String)
        {
            string? text = reader.GetString();
            if (string.Equals(text, "auto", StringComparison.OrdinalIgnoreCase)) return Auto;
            throw new JsonException($"expected a token count or \"auto\", got \"{text}\"");
        }
        return reader.GetInt32();
    }

    public override void Write(Utf8JsonWriter writer, int value, JsonSerializerOptions options)
    {
        if (value == Auto) writer.WriteStringValue("auto");
        else writer.WriteNumberValue(value);
    }
}

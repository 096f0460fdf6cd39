using System.Text.Encodings.Web;
using System.Text.Json;

namespace OR1.Model;

/// <summary>
/// Settings for the JSON files people read and grep (metrics.jsonl, eval and generate outputs, configs, checkpoints'
/// json): '+', '&lt;', '&gt;', '&amp;', apostrophes and non-ASCII text are written as themselves, so
/// <c>grep '&lt;think&gt;' eval.jsonl</c> finds what it should. Still valid JSON (quotes, backslashes and control
/// characters stay escaped); these files are never embedded in HTML, where the default encoder's caution matters.
/// </summary>
public static class ReadableJson
{
    /// <summary>The relaxed encoder.</summary>
    public static JavaScriptEncoder Encoder => JavaScriptEncoder.UnsafeRelaxedJsonEscaping;

    /// <summary>Serializer options with the relaxed encoder and nothing else.</summary>
    public static JsonSerializerOptions Options { get; } = new() { Encoder = Encoder };

    /// <summary>Writer options with the relaxed encoder.</summary>
    public static JsonWriterOptions WriterOptions(bool indented = false) => new() { Encoder = Encoder, Indented = indented };
}

using System.Globalization;
using System.Text.Json;
using OR1.Model.Checkpoints;

namespace OR1.Model;

/// <summary>
/// The hyperparameters of a Qwen2ForCausalLM model, as HuggingFace's <c>config.json</c> states them.
/// <see cref="Parse"/> and <see cref="Load"/> validate everything the model code relies on and report
/// problems as <see cref="ModelFormatException"/>s naming the file and the field;
/// <see cref="Save"/> writes a config.json that transformers loads as a Qwen2 model.
/// </summary>
public sealed record Qwen2Config
{
    /// <summary>Width of the residual stream (<c>hidden_size</c>).</summary>
    public required int HiddenSize { get; init; }

    /// <summary>Width of the SwiGLU MLP's inner layer (<c>intermediate_size</c>).</summary>
    public required int IntermediateSize { get; init; }

    /// <summary>Number of decoder layers (<c>num_hidden_layers</c>).</summary>
    public required int NumHiddenLayers { get; init; }

    /// <summary>Number of query heads (<c>num_attention_heads</c>).</summary>
    public required int NumAttentionHeads { get; init; }

    /// <summary>Number of key/value heads (<c>num_key_value_heads</c>); divides <see cref="NumAttentionHeads"/>.</summary>
    public required int NumKeyValueHeads { get; init; }

    /// <summary>Epsilon of every RMSNorm (<c>rms_norm_eps</c>).</summary>
    public required double RmsNormEps { get; init; }

    /// <summary>RoPE base frequency (<c>rope_theta</c>).</summary>
    public required double RopeTheta { get; init; }

    /// <summary>Number of rows of the embedding and LM head (<c>vocab_size</c>).</summary>
    public required int VocabSize { get; init; }

    /// <summary>Longest sequence the model was trained for (<c>max_position_embeddings</c>).</summary>
    public required int MaxPositionEmbeddings { get; init; }

    /// <summary>Whether the LM head reuses the embedding matrix (<c>tie_word_embeddings</c>; false when absent).</summary>
    public bool TieWordEmbeddings { get; init; }

    /// <summary>The checkpoint's storage dtype as PyTorch names it (<c>torch_dtype</c>, e.g. "bfloat16"), if stated.</summary>
    public string? TorchDType { get; init; }

    /// <summary>Beginning-of-sequence token id (<c>bos_token_id</c>), if stated.</summary>
    public int? BosTokenId { get; init; }

    /// <summary>End-of-sequence token ids (<c>eos_token_id</c>, an integer or a list); empty when absent.</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    /// <summary>Width of one attention head: <see cref="HiddenSize"/> / <see cref="NumAttentionHeads"/>.</summary>
    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>Reads and validates a HuggingFace config.json.</summary>
    /// <param name="path">Path of the config.json file.</param>
    /// <exception cref="ModelFormatException">The file is missing, unreadable, not JSON, or a field is missing, mistyped or invalid.</exception>
    public static Qwen2Config Load(string path)
    {
        string json;
        try
        {
            json = File.ReadAllText(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new ModelFormatException(path, "file not found", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, $"cannot be read: {e.Message}", e);
        }
        return Parse(json, path);
    }

    /// <summary>Parses and validates the text of a HuggingFace config.json.</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="sourceName">Where the text came from (normally the file path); every error message starts with it.</param>
    /// <exception cref="ModelFormatException">The text is not JSON, or a field is missing, mistyped or invalid.</exception>
    public static Qwen2Config Parse(string json, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(sourceName);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(sourceName, $"not valid JSON ({e.Message})", e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(sourceName, $"the top level must be a JSON object, but is {Describe(root)}");
            var reader = new FieldReader(root, sourceName);

            reader.RequireStringIfPresent("model_type", "qwen2");
            reader.RequireStringIfPresent("hidden_act", "silu");
            if (reader.OptionalBool("use_sliding_window") == true)
                throw new ModelFormatException(sourceName, "field 'use_sliding_window' is true, but sliding-window attention is not supported");
            if (root.TryGetProperty("rope_scaling", out var scaling) && scaling.ValueKind != JsonValueKind.Null)
                throw new ModelFormatException(sourceName, $"field 'rope_scaling' is set ({Truncate(scaling.GetRawText())}), but only plain RoPE is supported");

            var config = new Qwen2Config
            {
                HiddenSize = reader.RequiredInt("hidden_size"),
                IntermediateSize = reader.RequiredInt("intermediate_size"),
                NumHiddenLayers = reader.RequiredInt("num_hidden_layers"),
                NumAttentionHeads = reader.RequiredInt("num_attention_heads"),
                NumKeyValueHeads = reader.RequiredInt("num_key_value_heads"),
                RmsNormEps = reader.RequiredDouble("rms_norm_eps"),
                RopeTheta = reader.RequiredDouble("rope_theta"),
                VocabSize = reader.RequiredInt("vocab_size"),
                MaxPositionEmbeddings = reader.RequiredInt("max_position_embeddings"),
                TieWordEmbeddings = reader.OptionalBool("tie_word_embeddings") ?? false,
                TorchDType = reader.OptionalString("torch_dtype"),
                BosTokenId = reader.OptionalInt("bos_token_id"),
                EosTokenIds = reader.IntOrIntList("eos_token_id"),
            };
            config.Validate(sourceName);

            int? headDim = reader.OptionalInt("head_dim");
            if (headDim is int explicitHeadDim && explicitHeadDim != config.HeadDim)
                throw new ModelFormatException(sourceName,
                    $"field 'head_dim' is {explicitHeadDim}, but Qwen2 needs hidden_size / num_attention_heads = {config.HeadDim}");
            return config;
        }
    }

    /// <summary>
    /// Checks the values the model code relies on: positive sizes, finite positive eps and theta,
    /// heads dividing the hidden size, kv heads dividing the heads, an even head dimension for RoPE,
    /// and token ids inside the vocabulary.
    /// </summary>
    /// <param name="sourceName">Named at the start of every error message (normally the config.json path).</param>
    /// <exception cref="ModelFormatException">A value is invalid; the message names the field.</exception>
    public void Validate(string sourceName)
    {
        void Positive(int value, string field)
        {
            if (value <= 0) throw new ModelFormatException(sourceName, $"field '{field}' must be positive, but is {value}");
        }
        Positive(HiddenSize, "hidden_size");
        Positive(IntermediateSize, "intermediate_size");
        Positive(NumHiddenLayers, "num_hidden_layers");
        Positive(NumAttentionHeads, "num_attention_heads");
        Positive(NumKeyValueHeads, "num_key_value_heads");
        Positive(VocabSize, "vocab_size");
        Positive(MaxPositionEmbeddings, "max_position_embeddings");
        if (!(RmsNormEps > 0) || !double.IsFinite(RmsNormEps))
            throw new ModelFormatException(sourceName, $"field 'rms_norm_eps' must be a finite positive number, but is {Format(RmsNormEps)}");
        if (!(RopeTheta > 0) || !double.IsFinite(RopeTheta))
            throw new ModelFormatException(sourceName, $"field 'rope_theta' must be a finite positive number, but is {Format(RopeTheta)}");
        if (HiddenSize % NumAttentionHeads != 0)
            throw new ModelFormatException(sourceName,
                $"field 'num_attention_heads' ({NumAttentionHeads}) does not divide field 'hidden_size' ({HiddenSize})");
        if (NumAttentionHeads % NumKeyValueHeads != 0)
            throw new ModelFormatException(sourceName,
                $"field 'num_key_value_heads' ({NumKeyValueHeads}) does not divide field 'num_attention_heads' ({NumAttentionHeads})");
        if (HeadDim % 2 != 0)
            throw new ModelFormatException(sourceName,
                $"head dimension hidden_size / num_attention_heads = {HiddenSize} / {NumAttentionHeads} = {HeadDim} is odd (fields 'hidden_size', 'num_attention_heads'); RoPE needs an even head dimension");
        if (BosTokenId is int bos && (bos < 0 || bos >= VocabSize))
            throw new ModelFormatException(sourceName, $"field 'bos_token_id' ({bos}) is outside the vocabulary [0, {VocabSize})");
        ArgumentNullException.ThrowIfNull(EosTokenIds);
        foreach (int eos in EosTokenIds)
        {
            if (eos < 0 || eos >= VocabSize)
                throw new ModelFormatException(sourceName, $"field 'eos_token_id' ({eos}) is outside the vocabulary [0, {VocabSize})");
        }
    }

    /// <summary>
    /// Writes a config.json that transformers loads as Qwen2ForCausalLM: the fields above plus
    /// <c>architectures</c>, <c>model_type</c>, <c>hidden_act</c>, <c>use_sliding_window</c> = false and
    /// the other keys a Qwen2 config carries. Written to a temporary file first and then moved into place.
    /// </summary>
    /// <param name="path">Destination path (normally <c>modelDir/config.json</c>); its directory must exist.</param>
    /// <exception cref="ModelFormatException">This config is invalid (nothing is written).</exception>
    public void Save(string path)
    {
        Validate(path);
        SafetensorsWriter.WriteAtomically(path, stream =>
        {
            using var json = new Utf8JsonWriter(stream, ReadableJson.WriterOptions(indented: true));
            json.WriteStartObject();
            json.WriteStartArray("architectures");
            json.WriteStringValue("Qwen2ForCausalLM");
            json.WriteEndArray();
            json.WritePropertyName("attention_dropout");
            json.WriteRawValue("0.0");
            if (BosTokenId is int bos) json.WriteNumber("bos_token_id", bos);
            if (EosTokenIds.Count == 1) json.WriteNumber("eos_token_id", EosTokenIds[0]);
            else if (EosTokenIds.Count > 1)
            {
                json.WriteStartArray("eos_token_id");
                foreach (int eos in EosTokenIds) json.WriteNumberValue(eos);
                json.WriteEndArray();
            }
            json.WriteString("hidden_act", "silu");
            json.WriteNumber("hidden_size", HiddenSize);
            json.WritePropertyName("initializer_range");
            json.WriteRawValue("0.02");
            json.WriteNumber("intermediate_size", IntermediateSize);
            json.WriteNumber("max_position_embeddings", MaxPositionEmbeddings);
            json.WriteNumber("max_window_layers", NumHiddenLayers);
            json.WriteString("model_type", "qwen2");
            json.WriteNumber("num_attention_heads", NumAttentionHeads);
            json.WriteNumber("num_hidden_layers", NumHiddenLayers);
            json.WriteNumber("num_key_value_heads", NumKeyValueHeads);
            json.WritePropertyName("rms_norm_eps");
            json.WriteRawValue(Format(RmsNormEps));
            json.WriteNull("rope_scaling");
            json.WritePropertyName("rope_theta");
            json.WriteRawValue(Format(RopeTheta));
            json.WriteNull("sliding_window");
            json.WriteBoolean("tie_word_embeddings", TieWordEmbeddings);
            json.WriteString("torch_dtype", TorchDType ?? "float32");
            json.WriteBoolean("use_cache", true);
            json.WriteBoolean("use_sliding_window", false);
            json.WriteNumber("vocab_size", VocabSize);
            json.WriteEndObject();
            json.Flush();
            stream.WriteByte((byte)'\n');
        });
    }

    /// <inheritdoc />
    public bool Equals(Qwen2Config? other) =>
        other is not null
        && HiddenSize == other.HiddenSize
        && IntermediateSize == other.IntermediateSize
        && NumHiddenLayers == other.NumHiddenLayers
        && NumAttentionHeads == other.NumAttentionHeads
        && NumKeyValueHeads == other.NumKeyValueHeads
        && RmsNormEps.Equals(other.RmsNormEps)
        && RopeTheta.Equals(other.RopeTheta)
        && VocabSize == other.VocabSize
        && MaxPositionEmbeddings == other.MaxPositionEmbeddings
        && TieWordEmbeddings == other.TieWordEmbeddings
        && TorchDType == other.TorchDType
        && BosTokenId == other.BosTokenId
        && EosTokenIds.SequenceEqual(other.EosTokenIds);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(HiddenSize);
        hash.Add(IntermediateSize);
        hash.Add(NumHiddenLayers);
        hash.Add(NumAttentionHeads);
        hash.Add(NumKeyValueHeads);
        hash.Add(RmsNormEps);
        hash.Add(RopeTheta);
        hash.Add(VocabSize);
        hash.Add(MaxPositionEmbeddings);
        hash.Add(TieWordEmbeddings);
        hash.Add(TorchDType);
        hash.Add(BosTokenId);
        foreach (int eos in EosTokenIds) hash.Add(eos);
        return hash.ToHashCode();
    }

    /// <summary>Shortest round-trip decimal text of a double, always readable as a JSON number (e.g. "1E-06", "10000.0").</summary>
    private static string Format(double value)
    {
        string text = value.ToString("R", CultureInfo.InvariantCulture);
        return double.IsFinite(value) && !text.Contains('.') && !text.Contains('E') ? text + ".0" : text;
    }

    private static string Truncate(string text) => text.Length <= 60 ? text : text[..57] + "...";

    private static string Describe(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.String => $"the string {Truncate(element.GetRawText())}",
        JsonValueKind.Number => $"the number {Truncate(element.GetRawText())}",
        JsonValueKind.True or JsonValueKind.False => $"the boolean {element.GetRawText()}",
        JsonValueKind.Null => "null",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        _ => element.ValueKind.ToString(),
    };

    /// <summary>Typed access to the fields of the config object, with errors naming the source and the field.</summary>
    private readonly struct FieldReader(JsonElement root, string sourceName)
    {
        public int RequiredInt(string field) => Int(Required(field), field);

        public double RequiredDouble(string field)
        {
            var element = Required(field);
            if (element.ValueKind != JsonValueKind.Number || !element.TryGetDouble(out double value))
                throw Error($"field '{field}' must be a number, but is {Describe(element)}");
            return value;
        }

        public int? OptionalInt(string field) => Optional(field, out var element) ? Int(element, field) : null;

        public bool? OptionalBool(string field)
        {
            if (!Optional(field, out var element)) return null;
            return element.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Error($"field '{field}' must be true or false, but is {Describe(element)}"),
            };
        }

        public string? OptionalString(string field)
        {
            if (!Optional(field, out var element)) return null;
            if (element.ValueKind != JsonValueKind.String)
                throw Error($"field '{field}' must be a string, but is {Describe(element)}");
            return element.GetString();
        }

        public void RequireStringIfPresent(string field, string expected)
        {
            string? value = OptionalString(field);
            if (value is not null && value != expected)
                throw Error($"field '{field}' is \"{value}\", but only \"{expected}\" is supported");
        }

        public int[] IntOrIntList(string field)
        {
            if (!Optional(field, out var element)) return [];
            if (element.ValueKind == JsonValueKind.Number) return [Int(element, field)];
            if (element.ValueKind != JsonValueKind.Array)
                throw Error($"field '{field}' must be an integer or a list of integers, but is {Describe(element)}");
            var values = new int[element.GetArrayLength()];
            int i = 0;
            foreach (var item in element.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out values[i]))
                    throw Error($"field '{field}' must be an integer or a list of integers, but element {i} is {Describe(item)}");
                i++;
            }
            return values;
        }

        private JsonElement Required(string field)
        {
            if (!root.TryGetProperty(field, out var element))
                throw Error($"missing required field '{field}'");
            return element;
        }

        private bool Optional(string field, out JsonElement element) =>
            root.TryGetProperty(field, out element) && element.ValueKind != JsonValueKind.Null;

        private int Int(JsonElement element, string field)
        {
            if (element.ValueKind != JsonValueKind.Number || !element.TryGetInt32(out int value))
                throw Error($"field '{field}' must be an integer, but is {Describe(element)}");
            return value;
        }

        private ModelFormatException Error(string problem) => new(sourceName, problem);
    }
}

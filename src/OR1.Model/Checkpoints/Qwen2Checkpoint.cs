using System.Text.Json;

namespace OR1.Model.Checkpoints;

/// <summary>
/// A Qwen2ForCausalLM checkpoint directory as HuggingFace lays it out: <c>config.json</c> plus either
/// <c>model.safetensors</c> or a <c>model.safetensors.index.json</c> whose <c>weight_map</c> names the
/// shard holding each tensor. Loads F32, BF16 and F16 weights as floats and saves in the same layout,
/// so that a trained checkpoint opens in transformers.
/// </summary>
public static class Qwen2Checkpoint
{
    /// <summary>File name of the model configuration.</summary>
    public const string ConfigFileName = "config.json";

    /// <summary>File name of a single-file checkpoint's weights.</summary>
    public const string WeightsFileName = "model.safetensors";

    /// <summary>File name of a sharded checkpoint's index.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>
    /// The parameters of Qwen2ForCausalLM for <paramref name="config"/>, in HuggingFace's order and naming:
    /// the embedding [V, H]; per layer the input RMSNorm [H], q/k/v projections (weights [out, H] and biases),
    /// o_proj [H, Hq*D] without bias, the post-attention RMSNorm [H] and the SwiGLU MLP (gate and up [I, H],
    /// down [H, I]); the final norm [H]; and <c>lm_head.weight</c> [V, H] only when the embeddings are not tied.
    /// </summary>
    /// <param name="config">The model's configuration.</param>
    public static IReadOnlyList<(string Name, int[] Shape)> ParameterShapes(Qwen2Config config)
    {
        ArgumentNullException.ThrowIfNull(config);
        int h = config.HiddenSize;
        int q = config.NumAttentionHeads * config.HeadDim;
        int kv = config.NumKeyValueHeads * config.HeadDim;
        int inner = config.IntermediateSize;
        int v = config.VocabSize;
        var result = new List<(string, int[])>(3 + 12 * config.NumHiddenLayers) { ("model.embed_tokens.weight", [v, h]) };
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            result.Add((p + "input_layernorm.weight", [h]));
            result.Add((p + "self_attn.q_proj.weight", [q, h]));
            result.Add((p + "self_attn.q_proj.bias", [q]));
            result.Add((p + "self_attn.k_proj.weight", [kv, h]));
            result.Add((p + "self_attn.k_proj.bias", [kv]));
            result.Add((p + "self_attn.v_proj.weight", [kv, h]));
            result.Add((p + "self_attn.v_proj.bias", [kv]));
            result.Add((p + "self_attn.o_proj.weight", [h, q]));
            result.Add((p + "post_attention_layernorm.weight", [h]));
            result.Add((p + "mlp.gate_proj.weight", [inner, h]));
            result.Add((p + "mlp.up_proj.weight", [inner, h]));
            result.Add((p + "mlp.down_proj.weight", [h, inner]));
        }
        result.Add(("model.norm.weight", [h]));
        if (!config.TieWordEmbeddings) result.Add(("lm_head.weight", [v, h]));
        return result;
    }

    /// <summary>
    /// Loads a checkpoint directory: reads and validates config.json, opens model.safetensors or the shards of
    /// model.safetensors.index.json, checks that every parameter of <see cref="ParameterShapes"/> is present with
    /// the right shape and a float dtype, and only then passes each parameter, in that order, to
    /// <paramref name="sink"/> as float32 data. Extra tensors (such as rotary inv_freq buffers, or
    /// lm_head.weight when the embeddings are tied) are ignored.
    /// </summary>
    /// <param name="modelDir">The checkpoint directory.</param>
    /// <param name="sink">
    /// Receives each parameter's name and row-major data. The span is only valid during the call (the buffer is reused).
    /// </param>
    /// <returns>The checkpoint's configuration.</returns>
    /// <exception cref="ModelFormatException">
    /// A file is missing or malformed, or a parameter is missing, has the wrong shape or a non-float dtype; the message
    /// names the file, the tensor and, for shapes, the expected and actual shape. The sink is not called in that case.
    /// </exception>
    public static Qwen2Config Load(string modelDir, Action<string, ReadOnlySpan<float>> sink)
    {
        ArgumentNullException.ThrowIfNull(modelDir);
        ArgumentNullException.ThrowIfNull(sink);
        if (!Directory.Exists(modelDir)) throw new ModelFormatException(modelDir, "checkpoint directory not found");
        var config = Qwen2Config.Load(Path.Combine(modelDir, ConfigFileName));
        var parameters = ParameterShapes(config);

        string single = Path.Combine(modelDir, WeightsFileName);
        string index = Path.Combine(modelDir, IndexFileName);
        Dictionary<string, string> fileOf;
        string listingFile;
        if (File.Exists(single))
        {
            listingFile = single;
            fileOf = parameters.ToDictionary(p => p.Name, _ => single, StringComparer.Ordinal);
        }
        else if (File.Exists(index))
        {
            listingFile = index;
            fileOf = ReadIndex(index, modelDir);
        }
        else
        {
            throw new ModelFormatException(modelDir, $"checkpoint directory has neither {WeightsFileName} nor {IndexFileName}");
        }

        var files = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            var plan = new List<(string Name, SafetensorsFile File, long Count)>(parameters.Count);
            long largest = 0;
            foreach (var (name, shape) in parameters)
            {
                if (!fileOf.TryGetValue(name, out string? shardPath))
                    throw new ModelFormatException(listingFile, $"missing tensor '{name}' (expected shape {TensorEntry.FormatShape(shape)})");
                if (!files.TryGetValue(shardPath, out var file))
                {
                    file = SafetensorsFile.Open(shardPath);
                    files.Add(shardPath, file);
                }
                if (!file.Tensors.TryGetValue(name, out var entry))
                    throw new ModelFormatException(shardPath, $"missing tensor '{name}' (expected shape {TensorEntry.FormatShape(shape)})");
                if (!entry.HasShape(shape))
                    throw new ModelFormatException(shardPath,
                        $"tensor '{name}' has shape {entry.ShapeText}, but the config expects {TensorEntry.FormatShape(shape)}");
                if (!entry.DType.IsReadableAsFloat())
                    throw new ModelFormatException(shardPath, $"tensor '{name}' has dtype {entry.DType}; parameters must be F32, BF16 or F16");
                plan.Add((name, file, entry.ElementCount));
                largest = Math.Max(largest, entry.ElementCount);
            }

            if (largest > Array.MaxLength)
                throw new ModelFormatException(listingFile, $"a parameter has {largest} elements, too many for one array");
            var buffer = GC.AllocateUninitializedArray<float>((int)largest);
            foreach (var (name, file, count) in plan)
            {
                var span = buffer.AsSpan(0, (int)count);
                file.ReadAsFloat32(name, span);
                sink(name, span);
            }
            return config;
        }
        finally
        {
            foreach (var file in files.Values) file.Dispose();
        }
    }

    /// <summary>
    /// Saves a checkpoint directory loadable by transformers: config.json (with <c>torch_dtype</c> set to
    /// <paramref name="dtype"/>) and model.safetensors holding every parameter of <see cref="ParameterShapes"/>
    /// (no lm_head.weight when the embeddings are tied), with metadata <c>format</c> = <c>pt</c>. The config and
    /// every parameter's length are checked before anything is written, so invalid input leaves the directory
    /// untouched; each file is written to a temporary file and moved into place. Creates the directory if needed.
    /// </summary>
    /// <param name="modelDir">The checkpoint directory.</param>
    /// <param name="config">The model's configuration.</param>
    /// <param name="parameters">Gives the row-major float data of each parameter by name.</param>
    /// <param name="dtype">Storage type of the weights: F32, BF16 or F16.</param>
    /// <exception cref="ArgumentException">The config is invalid, the dtype unsupported, or a parameter has the wrong number of elements.</exception>
    public static void Save(string modelDir, Qwen2Config config, Func<string, ReadOnlyMemory<float>> parameters,
        SafetensorsDType dtype = SafetensorsDType.F32)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        CheckSave(modelDir, config, dtype);
        var data = new Dictionary<string, ReadOnlyMemory<float>>(StringComparer.Ordinal);
        foreach (var (name, shape) in ParameterShapes(config))
        {
            var values = parameters(name);
            long expected = 1;
            foreach (int dim in shape) expected *= dim;
            if (values.Length != expected)
                throw new ArgumentException(
                    $"parameter '{name}' has {values.Length} values, but shape {TensorEntry.FormatShape(shape)} needs {expected}", nameof(parameters));
            data.Add(name, values);
        }
        Save(modelDir, config, (name, sink) => sink(data[name].Span), dtype);
    }

    /// <summary>
    /// Saves a checkpoint directory as <see cref="Save(string, Qwen2Config, Func{string, ReadOnlyMemory{float}}, SafetensorsDType)"/>
    /// does, with each parameter's values streamed into the file as <paramref name="produce"/> gives them, a piece at a time,
    /// in <see cref="WeightsFileOrder"/>: no copy of the whole model is held in memory (a 7B model's fp32 weights are
    /// 30 GB), and a data-parallel run gathers each tensor from the ranks that hold its slices as it is written.
    /// </summary>
    /// <param name="modelDir">The checkpoint directory (created if needed).</param>
    /// <param name="config">The model's configuration.</param>
    /// <param name="produce">Called with each parameter's name and a sink that takes its row-major values in consecutive pieces.</param>
    /// <param name="dtype">Storage type of the weights: F32, BF16 or F16.</param>
    /// <exception cref="ArgumentException">The config is invalid or the dtype unsupported (before anything is written), or a
    /// parameter is given the wrong number of values (model.safetensors is then not written, nor config.json).</exception>
    public static void Save(string modelDir, Qwen2Config config, Action<string, Action<ReadOnlySpan<float>>> produce,
        SafetensorsDType dtype = SafetensorsDType.F32)
    {
        ArgumentNullException.ThrowIfNull(produce);
        CheckSave(modelDir, config, dtype);
        Directory.CreateDirectory(modelDir);
        SafetensorsWriter.Write(Path.Combine(modelDir, WeightsFileName), ParameterShapes(config), produce, dtype,
            new Dictionary<string, string> { ["format"] = "pt" });
        (config with { TorchDType = dtype.TorchName() }).Save(Path.Combine(modelDir, ConfigFileName));
    }

    /// <summary>The order in which the streaming <c>Save</c> asks for the parameters (model.safetensors's data order).</summary>
    public static IReadOnlyList<string> WeightsFileOrder(Qwen2Config config) => SafetensorsWriter.DataOrder(ParameterShapes(config).Select(p => p.Name));

    private static void CheckSave(string modelDir, Qwen2Config config, SafetensorsDType dtype)
    {
        ArgumentNullException.ThrowIfNull(modelDir);
        ArgumentNullException.ThrowIfNull(config);
        if (!dtype.IsReadableAsFloat())
            throw new ArgumentException($"cannot save weights as {dtype}; use F32, BF16 or F16", nameof(dtype));
        string configPath = Path.Combine(modelDir, ConfigFileName);
        try
        {
            config.Validate(configPath);
        }
        catch (ModelFormatException e)
        {
            throw new ArgumentException($"invalid config for {modelDir}: {e.Problem}", nameof(config), e);
        }
    }

    /// <summary>Reads a shard index's weight_map: tensor name to shard path (inside <paramref name="modelDir"/>).</summary>
    private static Dictionary<string, string> ReadIndex(string indexPath, string modelDir)
    {
        string text;
        try
        {
            text = File.ReadAllText(indexPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(indexPath, $"cannot be read: {e.Message}", e);
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(text);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(indexPath, $"not valid JSON ({e.Message})", e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(indexPath, "the top level must be a JSON object");
            if (!root.TryGetProperty("weight_map", out var map))
                throw new ModelFormatException(indexPath, "missing required field 'weight_map'");
            if (map.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(indexPath, "field 'weight_map' must be an object mapping tensor names to shard file names");
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var item in map.EnumerateObject())
            {
                if (item.Value.ValueKind != JsonValueKind.String)
                    throw new ModelFormatException(indexPath, $"weight_map entry for tensor '{item.Name}' must be a shard file name string");
                string shard = item.Value.GetString()!;
                if (shard.Length == 0 || shard != Path.GetFileName(shard) || shard is "." or "..")
                    throw new ModelFormatException(indexPath, $"weight_map entry for tensor '{item.Name}' names '{shard}', which is not a file name inside the checkpoint directory");
                if (!result.TryAdd(item.Name, Path.Combine(modelDir, shard)))
                    throw new ModelFormatException(indexPath, $"weight_map lists tensor '{item.Name}' twice");
            }
            return result;
        }
    }
}

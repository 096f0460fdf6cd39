using System.Text.Json;
using OR1.Model;
using OR1.Model.Checkpoints;
using OR1.Native;

namespace OR1.Tests.Model;

/// <summary>Loading and saving whole Qwen2 checkpoint directories, single-file and sharded, and their failure modes.</summary>
public sealed class Qwen2CheckpointTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("or1-checkpoint-").FullName;

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    /// <summary>Hidden 8, 4 query heads over 2 kv heads (head dim 2), 2 layers, MLP 12, vocabulary 11.</summary>
    private static Qwen2Config Tiny(bool tied = false) => new()
    {
        HiddenSize = 8,
        IntermediateSize = 12,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        RmsNormEps = 1e-6,
        RopeTheta = 10000,
        VocabSize = 11,
        MaxPositionEmbeddings = 64,
        TieWordEmbeddings = tied,
        BosTokenId = 1,
        EosTokenIds = [2],
    };

    /// <summary>Distinct deterministic values for every parameter of <paramref name="config"/>.</summary>
    private static Dictionary<string, float[]> Parameters(Qwen2Config config)
    {
        var result = new Dictionary<string, float[]>();
        int seed = 1;
        foreach (var (name, shape) in Qwen2Checkpoint.ParameterShapes(config))
        {
            var random = new Random(seed++);
            result[name] = Enumerable.Range(0, shape.Aggregate(1, (p, d) => p * d)).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        }
        return result;
    }

    private static (Qwen2Config Config, List<string> Order, Dictionary<string, float[]> Values) LoadAll(string dir)
    {
        var order = new List<string>();
        var values = new Dictionary<string, float[]>();
        var config = Qwen2Checkpoint.Load(dir, (name, data) =>
        {
            order.Add(name);
            values.Add(name, data.ToArray());
        });
        return (config, order, values);
    }

    private static IEnumerable<(string, int[], ReadOnlyMemory<float>)> Tensors(Qwen2Config config, Dictionary<string, float[]> values) =>
        Qwen2Checkpoint.ParameterShapes(config).Select(p => (p.Name, p.Shape, (ReadOnlyMemory<float>)values[p.Name]));

    /// <summary>Asserts that loading fails, names <paramref name="file"/> and every fragment, and never called the sink.</summary>
    private static void AssertLoadRejected(string dir, string file, params string[] fragments)
    {
        int calls = 0;
        var error = Assert.Throws<ModelFormatException>(() => Qwen2Checkpoint.Load(dir, (_, _) => calls++));
        Assert.That(error.FilePath, Is.EqualTo(file));
        Assert.That(error.Message, Does.StartWith(file + ": "));
        foreach (string fragment in fragments) Assert.That(error.Message, Does.Contain(fragment));
        Assert.That(calls, Is.Zero, "no parameter may be delivered from an invalid checkpoint");
    }

    private string WeightsPath => Path.Combine(_dir, Qwen2Checkpoint.WeightsFileName);

    private string ConfigPath => Path.Combine(_dir, Qwen2Checkpoint.ConfigFileName);

    [Test]
    public void ParameterShapesFollowTheHuggingFaceTable()
    {
        var shapes = Qwen2Checkpoint.ParameterShapes(Tiny()).ToDictionary(p => p.Name, p => p.Shape);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(shapes, Has.Count.EqualTo(1 + 12 * 2 + 1 + 1));
            Assert.That(shapes["model.embed_tokens.weight"], Is.EqualTo(new[] { 11, 8 }));
            Assert.That(shapes["model.layers.1.input_layernorm.weight"], Is.EqualTo(new[] { 8 }));
            Assert.That(shapes["model.layers.1.self_attn.q_proj.weight"], Is.EqualTo(new[] { 8, 8 }));
            Assert.That(shapes["model.layers.1.self_attn.q_proj.bias"], Is.EqualTo(new[] { 8 }));
            Assert.That(shapes["model.layers.1.self_attn.k_proj.weight"], Is.EqualTo(new[] { 4, 8 }));
            Assert.That(shapes["model.layers.1.self_attn.k_proj.bias"], Is.EqualTo(new[] { 4 }));
            Assert.That(shapes["model.layers.1.self_attn.v_proj.weight"], Is.EqualTo(new[] { 4, 8 }));
            Assert.That(shapes["model.layers.1.self_attn.v_proj.bias"], Is.EqualTo(new[] { 4 }));
            Assert.That(shapes["model.layers.1.self_attn.o_proj.weight"], Is.EqualTo(new[] { 8, 8 }));
            Assert.That(shapes, Does.Not.ContainKey("model.layers.1.self_attn.o_proj.bias"));
            Assert.That(shapes["model.layers.1.post_attention_layernorm.weight"], Is.EqualTo(new[] { 8 }));
            Assert.That(shapes["model.layers.1.mlp.gate_proj.weight"], Is.EqualTo(new[] { 12, 8 }));
            Assert.That(shapes["model.layers.1.mlp.up_proj.weight"], Is.EqualTo(new[] { 12, 8 }));
            Assert.That(shapes["model.layers.1.mlp.down_proj.weight"], Is.EqualTo(new[] { 8, 12 }));
            Assert.That(shapes["model.norm.weight"], Is.EqualTo(new[] { 8 }));
            Assert.That(shapes["lm_head.weight"], Is.EqualTo(new[] { 11, 8 }));
            Assert.That(Qwen2Checkpoint.ParameterShapes(Tiny(tied: true)).Select(p => p.Name), Does.Not.Contain("lm_head.weight"));
        }
    }

    [Test]
    public void ParameterCountOfDeepSeekR1DistillQwen15BIs1777088000()
    {
        var config = new Qwen2Config
        {
            HiddenSize = 1536, IntermediateSize = 8960, NumHiddenLayers = 28, NumAttentionHeads = 12, NumKeyValueHeads = 2,
            RmsNormEps = 1e-6, RopeTheta = 10000, VocabSize = 151936, MaxPositionEmbeddings = 131072,
        };
        var shapes = Qwen2Checkpoint.ParameterShapes(config);
        Assert.That(shapes, Has.Count.EqualTo(339));
        Assert.That(shapes.Sum(p => p.Shape.Aggregate(1L, (n, d) => n * d)), Is.EqualTo(1_777_088_000L));
    }

    [Test]
    public void F32SaveThenLoadIsExact()
    {
        var config = Tiny();
        var values = Parameters(config);
        Qwen2Checkpoint.Save(_dir, config, name => values[name]);

        var (loaded, order, read) = LoadAll(_dir);
        Assert.That(loaded, Is.EqualTo(config with { TorchDType = "float32" }));
        Assert.That(order, Is.EqualTo(Qwen2Checkpoint.ParameterShapes(config).Select(p => p.Name)), "every parameter once, in table order");
        foreach (var (name, expected) in values) Assert.That(read[name], Is.EqualTo(expected), name);
        using var file = SafetensorsFile.Open(WeightsPath);
        Assert.That(file.Metadata["format"], Is.EqualTo("pt"));
        Assert.That(Directory.GetFiles(_dir).Select(Path.GetFileName), Is.EquivalentTo(new[] { "config.json", "model.safetensors" }));
    }

    [Test]
    public void BF16SaveThenLoadEqualsBFloat16Rounding()
    {
        var config = Tiny();
        var values = Parameters(config);
        Qwen2Checkpoint.Save(_dir, config, name => values[name], SafetensorsDType.BF16);

        var (loaded, _, read) = LoadAll(_dir);
        Assert.That(loaded.TorchDType, Is.EqualTo("bfloat16"));
        foreach (var (name, original) in values)
            Assert.That(read[name], Is.EqualTo(original.Select(v => (float)(BFloat16)v).ToArray()), name);
        using var file = SafetensorsFile.Open(WeightsPath);
        Assert.That(file.Tensors.Values.Select(t => t.DType), Is.All.EqualTo(SafetensorsDType.BF16));
    }

    [Test]
    public void TiedCheckpointHasNoLmHead()
    {
        var config = Tiny(tied: true);
        var values = Parameters(config);
        string nested = Path.Combine(_dir, "runs", "step-10");
        Qwen2Checkpoint.Save(nested, config, name => values[name]);

        using (var file = SafetensorsFile.Open(Path.Combine(nested, Qwen2Checkpoint.WeightsFileName)))
            Assert.That(file.Tensors.Keys, Does.Not.Contain("lm_head.weight"));
        var (loaded, order, _) = LoadAll(nested);
        Assert.That(loaded.TieWordEmbeddings, Is.True);
        Assert.That(order, Has.Count.EqualTo(26));
    }

    [Test]
    public void ExtraTensorsAndATiedLmHeadAreIgnored()
    {
        var config = Tiny(tied: true);
        var values = Parameters(config);
        config.Save(ConfigPath);
        var extras = new (string, int[], ReadOnlyMemory<float>)[]
        {
            ("lm_head.weight", [11, 8], new float[88]),
            ("model.layers.0.self_attn.rotary_emb.inv_freq", [1], new float[1]),
        };
        SafetensorsWriter.Write(WeightsPath, Tensors(config, values).Concat(extras));

        var (_, order, read) = LoadAll(_dir);
        Assert.That(order, Does.Not.Contain("lm_head.weight").And.Not.Contain("model.layers.0.self_attn.rotary_emb.inv_freq"));
        Assert.That(read["model.embed_tokens.weight"], Is.EqualTo(values["model.embed_tokens.weight"]));
    }

    [Test]
    public void ShardedCheckpointLoads()
    {
        var config = Tiny();
        var values = Parameters(config);
        config.Save(ConfigPath);
        var all = Tensors(config, values).ToList();
        var first = all.Where(t => !t.Item1.StartsWith("model.layers.1.", StringComparison.Ordinal) && t.Item1 != "lm_head.weight").ToList();
        var second = all.Except(first).ToList();
        const string shard1 = "model-00001-of-00002.safetensors";
        const string shard2 = "model-00002-of-00002.safetensors";
        SafetensorsWriter.Write(Path.Combine(_dir, shard1), first, SafetensorsDType.F32, new Dictionary<string, string> { ["format"] = "pt" });
        SafetensorsWriter.Write(Path.Combine(_dir, shard2), second, SafetensorsDType.BF16, new Dictionary<string, string> { ["format"] = "pt" });
        var weightMap = first.ToDictionary(t => t.Item1, _ => shard1);
        foreach (var t in second) weightMap[t.Item1] = shard2;
        File.WriteAllText(Path.Combine(_dir, Qwen2Checkpoint.IndexFileName),
            JsonSerializer.Serialize(new { metadata = new { total_size = 1234 }, weight_map = weightMap }));

        var (_, order, read) = LoadAll(_dir);
        Assert.That(order, Has.Count.EqualTo(all.Count));
        foreach (var (name, _, _) in first) Assert.That(read[name], Is.EqualTo(values[name]), name);
        foreach (var (name, _, _) in second) Assert.That(read[name], Is.EqualTo(values[name].Select(v => (float)(BFloat16)v).ToArray()), name);
    }

    [Test]
    public void WrongShapeIsReportedWithExpectedAndActual()
    {
        var config = Tiny();
        var values = Parameters(config);
        config.Save(ConfigPath);
        var tensors = Tensors(config, values)
            .Select(t => t.Item1 == "model.layers.1.mlp.gate_proj.weight" ? (t.Item1, new[] { 8, 12 }, t.Item3) : t);
        SafetensorsWriter.Write(WeightsPath, tensors);
        AssertLoadRejected(_dir, WeightsPath, "'model.layers.1.mlp.gate_proj.weight'", "has shape [8, 12]", "expects [12, 8]");
    }

    [Test]
    public void MissingTensorIsReported()
    {
        var config = Tiny();
        var values = Parameters(config);
        config.Save(ConfigPath);
        SafetensorsWriter.Write(WeightsPath, Tensors(config, values).Where(t => t.Item1 != "model.layers.0.self_attn.k_proj.bias"));
        AssertLoadRejected(_dir, WeightsPath, "missing tensor 'model.layers.0.self_attn.k_proj.bias'", "[4]");
    }

    [Test]
    public void UntiedCheckpointWithoutLmHeadIsReported()
    {
        var config = Tiny();
        var values = Parameters(config);
        config.Save(ConfigPath);
        SafetensorsWriter.Write(WeightsPath, Tensors(config, values).Where(t => t.Item1 != "lm_head.weight"));
        AssertLoadRejected(_dir, WeightsPath, "missing tensor 'lm_head.weight'");
    }

    [Test]
    public void TensorMissingFromTheIndexIsReported()
    {
        var config = Tiny();
        var values = Parameters(config);
        config.Save(ConfigPath);
        SafetensorsWriter.Write(Path.Combine(_dir, "a.safetensors"), Tensors(config, values));
        var weightMap = Qwen2Checkpoint.ParameterShapes(config).Where(p => p.Name != "model.norm.weight").ToDictionary(p => p.Name, _ => "a.safetensors");
        string index = Path.Combine(_dir, Qwen2Checkpoint.IndexFileName);
        File.WriteAllText(index, JsonSerializer.Serialize(new { weight_map = weightMap }));
        AssertLoadRejected(_dir, index, "missing tensor 'model.norm.weight'");
    }

    [Test]
    public void TensorAbsentFromItsShardIsReported()
    {
        var config = Tiny();
        var values = Parameters(config);
        config.Save(ConfigPath);
        string shard = Path.Combine(_dir, "a.safetensors");
        SafetensorsWriter.Write(shard, Tensors(config, values).Where(t => t.Item1 != "model.norm.weight"));
        var weightMap = Qwen2Checkpoint.ParameterShapes(config).ToDictionary(p => p.Name, _ => "a.safetensors");
        File.WriteAllText(Path.Combine(_dir, Qwen2Checkpoint.IndexFileName), JsonSerializer.Serialize(new { weight_map = weightMap }));
        AssertLoadRejected(_dir, shard, "missing tensor 'model.norm.weight'");
    }

    [Test]
    public void MissingShardFileIsReported()
    {
        var config = Tiny();
        config.Save(ConfigPath);
        var weightMap = Qwen2Checkpoint.ParameterShapes(config).ToDictionary(p => p.Name, _ => "gone.safetensors");
        File.WriteAllText(Path.Combine(_dir, Qwen2Checkpoint.IndexFileName), JsonSerializer.Serialize(new { weight_map = weightMap }));
        AssertLoadRejected(_dir, Path.Combine(_dir, "gone.safetensors"), "not found");
    }

    [TestCase("{\"metadata\": {}}", "missing required field 'weight_map'")]
    [TestCase("{\"weight_map\": [1, 2]}", "'weight_map' must be an object")]
    [TestCase("{\"weight_map\": {\"model.norm.weight\": \"../outside.safetensors\"}}", "not a file name inside the checkpoint directory")]
    [TestCase("not json", "not valid JSON")]
    public void MalformedIndexIsReported(string text, string problem)
    {
        Tiny().Save(ConfigPath);
        string index = Path.Combine(_dir, Qwen2Checkpoint.IndexFileName);
        File.WriteAllText(index, text);
        AssertLoadRejected(_dir, index, problem);
    }

    [Test]
    public void DirectoryWithoutWeightsIsReported()
    {
        Tiny().Save(ConfigPath);
        AssertLoadRejected(_dir, _dir, "neither model.safetensors nor model.safetensors.index.json");
    }

    [Test]
    public void ConfigMissingAFieldIsReported()
    {
        var config = Tiny();
        var values = Parameters(config);
        Qwen2Checkpoint.Save(_dir, config, name => values[name]);
        string text = File.ReadAllText(ConfigPath);
        File.WriteAllText(ConfigPath, text.Replace("\"num_key_value_heads\": 2,", "", StringComparison.Ordinal));
        AssertLoadRejected(_dir, ConfigPath, "missing required field 'num_key_value_heads'");
    }

    [Test]
    public void NonFloatDTypeIsReported()
    {
        var config = Tiny();
        var values = Parameters(config);
        Qwen2Checkpoint.Save(_dir, config, name => values[name]);
        var bytes = File.ReadAllBytes(WeightsPath);
        string all = System.Text.Encoding.Latin1.GetString(bytes);
        string before = "\"model.norm.weight\":{\"dtype\":\"F32\"";
        string after = "\"model.norm.weight\":{\"dtype\":\"I32\"";
        File.WriteAllBytes(WeightsPath, System.Text.Encoding.Latin1.GetBytes(all.Replace(before, after, StringComparison.Ordinal)));
        AssertLoadRejected(_dir, WeightsPath, "'model.norm.weight'", "dtype I32");
    }

    [Test]
    public void TruncatedWeightsFileIsReported()
    {
        var config = Tiny();
        var values = Parameters(config);
        Qwen2Checkpoint.Save(_dir, config, name => values[name]);
        var bytes = File.ReadAllBytes(WeightsPath);
        File.WriteAllBytes(WeightsPath, bytes[..(bytes.Length - 10)]);
        AssertLoadRejected(_dir, WeightsPath, "run past the end of the data section");
    }

    [Test]
    public void SaveWithAWrongParameterLengthWritesNothing()
    {
        var config = Tiny();
        var values = Parameters(config);
        values["model.layers.1.mlp.down_proj.weight"] = new float[95];
        string target = Path.Combine(_dir, "new");
        var error = Assert.Throws<ArgumentException>(() => Qwen2Checkpoint.Save(target, config, name => values[name]));
        Assert.That(error.Message, Does.Contain("'model.layers.1.mlp.down_proj.weight'").And.Contain("95").And.Contain("[8, 12]"));
        Assert.That(Directory.Exists(target), Is.False, "nothing may be written, not even the directory");
    }

    [Test]
    public void SaveWithAnInvalidConfigWritesNothing()
    {
        var config = Tiny() with { NumKeyValueHeads = 3 };
        var values = Parameters(Tiny());
        string target = Path.Combine(_dir, "new");
        var error = Assert.Throws<ArgumentException>(() => Qwen2Checkpoint.Save(target, config, name => values[name]));
        Assert.That(error.Message, Does.Contain("num_key_value_heads"));
        Assert.That(Directory.Exists(target), Is.False);
    }

    [Test]
    public void FailedSaveLeavesTheExistingCheckpointUntouched()
    {
        var config = Tiny();
        var values = Parameters(config);
        Qwen2Checkpoint.Save(_dir, config, name => values[name]);
        var weights = File.ReadAllBytes(WeightsPath);
        var json = File.ReadAllBytes(ConfigPath);

        Assert.Throws<KeyNotFoundException>(() => Qwen2Checkpoint.Save(_dir, config, name => name == "model.norm.weight" ? throw new KeyNotFoundException(name) : values[name]));
        Assert.Throws<ArgumentException>(() => Qwen2Checkpoint.Save(_dir, config, name => values[name], SafetensorsDType.I8));
        Assert.Throws<ArgumentException>(() => Qwen2Checkpoint.Save(_dir, config, name => values[name].AsMemory(1)));

        Assert.That(File.ReadAllBytes(WeightsPath), Is.EqualTo(weights));
        Assert.That(File.ReadAllBytes(ConfigPath), Is.EqualTo(json));
        Assert.That(Directory.GetFileSystemEntries(_dir), Has.Length.EqualTo(2));
    }
}

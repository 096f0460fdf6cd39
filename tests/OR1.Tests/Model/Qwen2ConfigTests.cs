using System.Text.Json;
using OR1.Model;
using OR1.Model.Checkpoints;

namespace OR1.Tests.Model;

/// <summary>Parsing, validation and saving of HuggingFace Qwen2 config.json files.</summary>
public sealed class Qwen2ConfigTests
{
    private const string Source = "/models/r1-distill/config.json";

    /// <summary>The fields of DeepSeek-R1-Distill-Qwen-1.5B's config.json, as raw JSON values.</summary>
    private static Dictionary<string, string> DeepSeekFields() => new()
    {
        ["architectures"] = "[\"Qwen2ForCausalLM\"]",
        ["attention_dropout"] = "0.0",
        ["bos_token_id"] = "151643",
        ["eos_token_id"] = "151643",
        ["hidden_act"] = "\"silu\"",
        ["hidden_size"] = "1536",
        ["initializer_range"] = "0.02",
        ["intermediate_size"] = "8960",
        ["max_position_embeddings"] = "131072",
        ["max_window_layers"] = "21",
        ["model_type"] = "\"qwen2\"",
        ["num_attention_heads"] = "12",
        ["num_hidden_layers"] = "28",
        ["num_key_value_heads"] = "2",
        ["rms_norm_eps"] = "1e-06",
        ["rope_theta"] = "10000",
        ["sliding_window"] = "4096",
        ["tie_word_embeddings"] = "false",
        ["torch_dtype"] = "\"bfloat16\"",
        ["transformers_version"] = "\"4.44.0\"",
        ["use_cache"] = "true",
        ["use_mrope"] = "false",
        ["use_sliding_window"] = "false",
        ["vocab_size"] = "151936",
    };

    private static string Json(Dictionary<string, string> fields) =>
        "{\n" + string.Join(",\n", fields.Select(f => $"  \"{f.Key}\": {f.Value}")) + "\n}\n";

    private static string JsonWith(string field, string? rawValue)
    {
        var fields = DeepSeekFields();
        if (rawValue is null) fields.Remove(field);
        else fields[field] = rawValue;
        return Json(fields);
    }

    /// <summary>Asserts that parsing fails with a message that starts with the source and contains every fragment.</summary>
    private static void AssertRejected(string json, params string[] fragments)
    {
        var error = Assert.Throws<ModelFormatException>(() => Qwen2Config.Parse(json, Source));
        Assert.That(error.FilePath, Is.EqualTo(Source));
        Assert.That(error.Message, Does.StartWith(Source + ": "));
        foreach (string fragment in fragments) Assert.That(error.Message, Does.Contain(fragment));
    }

    [Test]
    public void ParsesDeepSeekR1DistillQwen15BConfig()
    {
        var config = Qwen2Config.Parse(Json(DeepSeekFields()), Source);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(config.HiddenSize, Is.EqualTo(1536));
            Assert.That(config.IntermediateSize, Is.EqualTo(8960));
            Assert.That(config.NumHiddenLayers, Is.EqualTo(28));
            Assert.That(config.NumAttentionHeads, Is.EqualTo(12));
            Assert.That(config.NumKeyValueHeads, Is.EqualTo(2));
            Assert.That(config.RmsNormEps, Is.EqualTo(1e-6));
            Assert.That(config.RopeTheta, Is.EqualTo(10000.0));
            Assert.That(config.VocabSize, Is.EqualTo(151936));
            Assert.That(config.MaxPositionEmbeddings, Is.EqualTo(131072));
            Assert.That(config.TieWordEmbeddings, Is.False);
            Assert.That(config.TorchDType, Is.EqualTo("bfloat16"));
            Assert.That(config.BosTokenId, Is.EqualTo(151643));
            Assert.That(config.EosTokenIds, Is.EqualTo(new[] { 151643 }));
            Assert.That(config.HeadDim, Is.EqualTo(128));
        }
    }

    [Test]
    public void EosTokenIdMayBeAList()
    {
        var config = Qwen2Config.Parse(JsonWith("eos_token_id", "[151645, 151643]"), Source);
        Assert.That(config.EosTokenIds, Is.EqualTo(new[] { 151645, 151643 }));
    }

    [Test]
    public void OptionalFieldsMayBeAbsent()
    {
        var fields = DeepSeekFields();
        foreach (string optional in new[] { "tie_word_embeddings", "torch_dtype", "bos_token_id", "eos_token_id", "model_type", "hidden_act", "use_sliding_window" })
            fields.Remove(optional);
        var config = Qwen2Config.Parse(Json(fields), Source);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(config.TieWordEmbeddings, Is.False);
            Assert.That(config.TorchDType, Is.Null);
            Assert.That(config.BosTokenId, Is.Null);
            Assert.That(config.EosTokenIds, Is.Empty);
        }
    }

    [Test]
    public void TiedEmbeddingsAreRead()
    {
        var config = Qwen2Config.Parse(JsonWith("tie_word_embeddings", "true"), Source);
        Assert.That(config.TieWordEmbeddings, Is.True);
    }

    [Test]
    public void LoadReadsAFile()
    {
        string dir = Directory.CreateTempSubdirectory("or1-config-").FullName;
        try
        {
            string path = Path.Combine(dir, "config.json");
            File.WriteAllText(path, Json(DeepSeekFields()));
            Assert.That(Qwen2Config.Load(path), Is.EqualTo(Qwen2Config.Parse(Json(DeepSeekFields()), Source)));

            File.WriteAllText(path, JsonWith("vocab_size", null));
            var error = Assert.Throws<ModelFormatException>(() => Qwen2Config.Load(path));
            Assert.That(error.Message, Does.StartWith(path + ": ").And.Contain("vocab_size"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void LoadOfAMissingFileNamesIt()
    {
        string path = Path.Combine(Path.GetTempPath(), $"or1-missing-{Guid.NewGuid():N}", "config.json");
        var error = Assert.Throws<ModelFormatException>(() => Qwen2Config.Load(path));
        Assert.That(error.FilePath, Is.EqualTo(path));
        Assert.That(error.Message, Does.Contain("not found"));
    }

    [Test]
    public void SaveWritesATransformersConfigThatLoadsBack()
    {
        string dir = Directory.CreateTempSubdirectory("or1-config-").FullName;
        try
        {
            var config = Qwen2Config.Parse(JsonWith("eos_token_id", "[151645, 151643]"), Source);
            string path = Path.Combine(dir, "config.json");
            config.Save(path);

            Assert.That(Qwen2Config.Load(path), Is.EqualTo(config));
            using var saved = JsonDocument.Parse(File.ReadAllText(path));
            var root = saved.RootElement;
            using (Assert.EnterMultipleScope())
            {
                Assert.That(root.GetProperty("architectures")[0].GetString(), Is.EqualTo("Qwen2ForCausalLM"));
                Assert.That(root.GetProperty("model_type").GetString(), Is.EqualTo("qwen2"));
                Assert.That(root.GetProperty("hidden_act").GetString(), Is.EqualTo("silu"));
                Assert.That(root.GetProperty("use_sliding_window").GetBoolean(), Is.False);
                Assert.That(root.GetProperty("tie_word_embeddings").GetBoolean(), Is.False);
                Assert.That(root.GetProperty("torch_dtype").GetString(), Is.EqualTo("bfloat16"));
                Assert.That(root.GetProperty("rms_norm_eps").GetDouble(), Is.EqualTo(1e-6));
                Assert.That(root.GetProperty("rope_theta").GetDouble(), Is.EqualTo(10000.0));
                Assert.That(root.GetProperty("hidden_size").GetInt32(), Is.EqualTo(1536));
                Assert.That(root.GetProperty("eos_token_id").GetArrayLength(), Is.EqualTo(2));
            }
            Assert.That(Directory.GetFiles(dir), Has.Length.EqualTo(1), "no temporary file may be left behind");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void SaveOfAnInvalidConfigWritesNothing()
    {
        string dir = Directory.CreateTempSubdirectory("or1-config-").FullName;
        try
        {
            var config = Qwen2Config.Parse(Json(DeepSeekFields()), Source) with { NumKeyValueHeads = 5 };
            string path = Path.Combine(dir, "config.json");
            var error = Assert.Throws<ModelFormatException>(() => config.Save(path));
            Assert.That(error.Message, Does.Contain("num_key_value_heads"));
            Assert.That(Directory.GetFileSystemEntries(dir), Is.Empty);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [TestCase("hidden_size")]
    [TestCase("intermediate_size")]
    [TestCase("num_hidden_layers")]
    [TestCase("num_attention_heads")]
    [TestCase("num_key_value_heads")]
    [TestCase("rms_norm_eps")]
    [TestCase("rope_theta")]
    [TestCase("vocab_size")]
    [TestCase("max_position_embeddings")]
    public void MissingRequiredFieldIsReported(string field) =>
        AssertRejected(JsonWith(field, null), "missing required field", $"'{field}'");

    [TestCase("hidden_size", "\"1536\"", "must be an integer")]
    [TestCase("num_hidden_layers", "28.5", "must be an integer")]
    [TestCase("vocab_size", "null", "must be an integer")]
    [TestCase("rms_norm_eps", "\"1e-6\"", "must be a number")]
    [TestCase("tie_word_embeddings", "\"false\"", "must be true or false")]
    [TestCase("torch_dtype", "16", "must be a string")]
    [TestCase("bos_token_id", "[1]", "must be an integer")]
    [TestCase("eos_token_id", "\"</s>\"", "must be an integer or a list of integers")]
    [TestCase("eos_token_id", "[1, \"x\"]", "must be an integer or a list of integers")]
    public void WrongJsonTypeIsReported(string field, string rawValue, string problem) =>
        AssertRejected(JsonWith(field, rawValue), $"'{field}'", problem);

    [TestCase("hidden_size", "0")]
    [TestCase("intermediate_size", "-8960")]
    [TestCase("num_hidden_layers", "0")]
    [TestCase("num_attention_heads", "0")]
    [TestCase("num_key_value_heads", "-2")]
    [TestCase("vocab_size", "0")]
    [TestCase("max_position_embeddings", "0")]
    public void NonPositiveSizeIsReported(string field, string rawValue) =>
        AssertRejected(JsonWith(field, rawValue), $"'{field}'", "must be positive", rawValue);

    [TestCase("rms_norm_eps", "0")]
    [TestCase("rms_norm_eps", "-1e-6")]
    [TestCase("rope_theta", "0.0")]
    public void NonPositiveEpsOrThetaIsReported(string field, string rawValue) =>
        AssertRejected(JsonWith(field, rawValue), $"'{field}'", "finite positive");

    [Test]
    public void HeadsNotDividingHiddenSizeIsReported() =>
        AssertRejected(JsonWith("num_attention_heads", "10"), "'num_attention_heads' (10)", "does not divide", "'hidden_size' (1536)");

    [Test]
    public void KvHeadsNotDividingHeadsIsReported() =>
        AssertRejected(JsonWith("num_key_value_heads", "5"), "'num_key_value_heads' (5)", "does not divide", "'num_attention_heads' (12)");

    [Test]
    public void OddHeadDimIsReported()
    {
        var fields = DeepSeekFields();
        fields["hidden_size"] = "36";
        fields["num_attention_heads"] = "4";
        AssertRejected(Json(fields), "'hidden_size'", "'num_attention_heads'", "= 9 is odd", "RoPE");
    }

    [TestCase("this is not JSON")]
    [TestCase("{\"hidden_size\": 1536,")]
    [TestCase("")]
    public void NotJsonIsReported(string text) => AssertRejected(text, "not valid JSON");

    [Test]
    public void TopLevelArrayIsReported() => AssertRejected("[1, 2, 3]", "must be a JSON object", "an array");

    [Test]
    public void OtherModelTypeIsReported() => AssertRejected(JsonWith("model_type", "\"llama\""), "'model_type'", "llama", "qwen2");

    [Test]
    public void OtherActivationIsReported() => AssertRejected(JsonWith("hidden_act", "\"gelu\""), "'hidden_act'", "gelu");

    [Test]
    public void SlidingWindowAttentionIsReported() =>
        AssertRejected(JsonWith("use_sliding_window", "true"), "'use_sliding_window'", "not supported");

    [Test]
    public void RopeScalingIsReported() =>
        AssertRejected(JsonWith("rope_scaling", "{\"type\": \"yarn\", \"factor\": 4.0}"), "'rope_scaling'", "yarn");

    [Test]
    public void NullRopeScalingIsAccepted() =>
        Assert.That(Qwen2Config.Parse(JsonWith("rope_scaling", "null"), Source).HeadDim, Is.EqualTo(128));

    [Test]
    public void MismatchedExplicitHeadDimIsReported() =>
        AssertRejected(JsonWith("head_dim", "64"), "'head_dim'", "64", "128");

    [Test]
    public void TokenIdOutsideTheVocabularyIsReported() =>
        AssertRejected(JsonWith("eos_token_id", "[151643, 151936]"), "'eos_token_id'", "151936", "outside the vocabulary");
}

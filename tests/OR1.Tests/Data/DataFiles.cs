using System.Text.Json.Nodes;
using Parquet;
using Parquet.Schema;
using Parquet.Serialization;
using OR1.Tests.Support;

namespace OR1.Tests.Data;

/// <summary>
/// Files for the data tests: the real AIME parquet files the repository carries (data/eval/skywork-or1), and
/// small parquet / JSONL files written on the fly in the real nested schema.
/// </summary>
internal static class DataFiles
{
    public const string Aime24 = "aime24.parquet";
    public const string Aime25 = "aime25.parquet";

    /// <summary>The path of a file of data/eval/skywork-or1; fails the test (never ignores it) when it is missing.</summary>
    public static string EvalFile(string name)
    {
        string path = Path.Combine(RepositoryPaths.SkyworkEvalData, name);
        if (!File.Exists(path)) Assert.Fail($"{path} not found: the repository carries the AIME evaluation files in data/eval/skywork-or1");
        return path;
    }

    /// <summary>The real file's schema, plus extra_info.model_difficulty as in the training set.</summary>
    public static ParquetSchema TrainingSchema() => new(
        new DataField<string>("data_source"),
        new ListField("prompt", new StructField("element", new DataField<string>("content"), new DataField<string>("role"))),
        new DataField<string>("ability"),
        new StructField("reward_model", new DataField<string>("ground_truth"), new DataField<string>("style")),
        new StructField("extra_info",
            new DataField<long?>("index"),
            new StructField("model_difficulty",
                new DataField<long?>("DeepSeek-R1-Distill-Qwen-1.5B"),
                new DataField<long?>("DeepSeek-R1-Distill-Qwen-7B"),
                new DataField<long?>("DeepSeek-R1-Distill-Qwen-32B")),
            new DataField<string>("split")));

    /// <summary>Writes <paramref name="rows"/> (JSON objects in the JSONL shape) as a parquet file in <see cref="TrainingSchema"/>.</summary>
    public static void WriteParquet(string path, IEnumerable<JsonObject> rows, int? rowGroupSize = null)
    {
        var data = rows.Select(r => (IDictionary<string, object?>)ToUntyped(r)!).ToList();
        var options = new ParquetOptions();
        if (rowGroupSize is int size) options.RowGroupSize = size;
        using var stream = File.Create(path);
        ParquetSerializer.SerializeUntypedAsync(data, TrainingSchema(), stream, options).GetAwaiter().GetResult();
    }

    /// <summary>The number of row groups of a parquet file.</summary>
    public static int RowGroupCount(string path)
    {
        using var stream = File.OpenRead(path);
        var reader = ParquetReader.CreateAsync(stream).GetAwaiter().GetResult();
        try
        {
            return reader.RowGroupCount;
        }
        finally
        {
            reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    /// <summary>Writes <paramref name="rows"/> as JSONL, one compact object per line.</summary>
    public static void WriteJsonLines(string path, IEnumerable<JsonNode?> rows)
        => File.WriteAllLines(path, rows.Select(r => r?.ToJsonString() ?? "null"));

    /// <summary>A row in the dataset's shape; null arguments leave the field null.</summary>
    public static JsonObject Row(string? dataSource = "synthetic-math", string? content = "What is 1+1?", string? ability = "math",
        string? groundTruth = "[\"2\"]", long? index = 0, int? d1_5 = null, int? d7 = null, int? d32 = null, string? split = "train")
    {
        var difficulty = new JsonObject
        {
            ["DeepSeek-R1-Distill-Qwen-1.5B"] = d1_5,
            ["DeepSeek-R1-Distill-Qwen-7B"] = d7,
            ["DeepSeek-R1-Distill-Qwen-32B"] = d32,
        };
        return new JsonObject
        {
            ["data_source"] = dataSource,
            ["prompt"] = content is null ? null : new JsonArray(new JsonObject { ["content"] = content, ["role"] = "user" }),
            ["ability"] = ability,
            ["reward_model"] = new JsonObject { ["ground_truth"] = groundTruth, ["style"] = "rule" },
            ["extra_info"] = new JsonObject { ["index"] = index, ["model_difficulty"] = difficulty, ["split"] = split },
        };
    }

    /// <summary>JSON nodes as the plain CLR values ParquetSerializer.SerializeUntypedAsync takes.</summary>
    private static object? ToUntyped(JsonNode? node) => node switch
    {
        null => null,
        JsonObject obj => obj.ToDictionary(p => p.Key, p => ToUntyped(p.Value)),
        JsonArray array => array.Select(e => (Dictionary<string, object?>)ToUntyped(e)!).ToList(),
        JsonValue value when value.TryGetValue(out string? s) => s,
        JsonValue value when value.TryGetValue(out long l) => (long?)l,
        JsonValue value when value.TryGetValue(out int i) => (long?)i,
        _ => throw new ArgumentException($"unsupported test value {node.ToJsonString()}"),
    };
}

/// <summary>A fresh temporary folder per test, deleted afterwards.</summary>
public abstract class TempFolderTest
{
    protected string Folder { get; private set; } = "";

    [SetUp]
    public void CreateFolder()
    {
        Folder = Path.Combine(Path.GetTempPath(), "or1-data-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Folder);
    }

    [TearDown]
    public void DeleteFolder()
    {
        if (Directory.Exists(Folder)) Directory.Delete(Folder, recursive: true);
    }

    protected string PathOf(string name) => Path.Combine(Folder, name);
}

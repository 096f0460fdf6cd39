using System.Text.Json.Nodes;
using OR1.Grpo.Data;

namespace OR1.Tests.Data;

/// <summary>The reader on small JSONL and parquet files written in the real schema.</summary>
public class DatasetReaderTests : TempFolderTest
{
    private const string LeetCodeTruth = "{\"import_prefix\": null, \"test_code\": \"def check(f):\\n    assert f(2) == 4\", \"entry_point\": \"square\"}";
    private const string StdioTruth = "{\"inputs\": [\"2\\n\"], \"outputs\": [\"4\\n\"], \"fn_name\": null}";

    /// <summary>Rows covering both abilities, difficulties with a null entry, an index and a missing index.</summary>
    private static List<JsonObject> MixedRows() =>
    [
        DataFiles.Row("skywork-math", "Compute 2+2.", "math", "[\"4\"]", index: 11, d1_5: 3, d7: 0, d32: null),
        DataFiles.Row("skywork-code", "Write square(x).", "code", LeetCodeTruth, index: 12, d1_5: 16, d7: 8, d32: 1),
        DataFiles.Row("skywork-code", "Read n, print n*n.", "code", StdioTruth, index: null, d1_5: null, d7: 15, d32: null, split: null),
    ];

    private static void AssertMixedRows(IReadOnlyList<RlExample> examples)
    {
        Assert.That(examples, Has.Count.EqualTo(3));

        var math = examples[0];
        Assert.That(math.DataSource, Is.EqualTo("skywork-math"));
        Assert.That(math.Prompt, Is.EqualTo(new[] { new PromptMessage("user", "Compute 2+2.") }));
        Assert.That(math.Ability, Is.EqualTo(Abilities.Math));
        Assert.That(((MathGroundTruth)math.GroundTruth).Answers, Is.EqualTo(new[] { "4" }));
        Assert.That(math.Index, Is.EqualTo(11));
        Assert.That(math.Id, Is.EqualTo("skywork-math/11"));
        Assert.That(math.Split, Is.EqualTo("train"));
        Assert.That(math.ModelDifficulty, Is.EquivalentTo(new Dictionary<string, int>
        {
            [BaseModels.Qwen1_5B] = 3,
            [BaseModels.Qwen7B] = 0,
        }));

        var leetCode = examples[1];
        Assert.That(leetCode.Ability, Is.EqualTo(Abilities.Code));
        Assert.That(leetCode.GroundTruth, Is.InstanceOf<CodeGroundTruth>());
        Assert.That(((CodeGroundTruth)leetCode.GroundTruth).Keys, Is.EquivalentTo(new[] { "test_code", "entry_point" }));
        Assert.That(leetCode.ModelDifficulty, Is.EquivalentTo(new Dictionary<string, int>
        {
            [BaseModels.Qwen1_5B] = 16,
            [BaseModels.Qwen7B] = 8,
            [BaseModels.Qwen32B] = 1,
        }));

        var stdio = examples[2];
        Assert.That(((CodeGroundTruth)stdio.GroundTruth).Keys, Is.EquivalentTo(new[] { "inputs", "outputs" }));
        Assert.That(stdio.Index, Is.Null);
        Assert.That(stdio.Id, Does.StartWith("skywork-code/sha256:"));
        Assert.That(stdio.Split, Is.Null);
        Assert.That(stdio.ModelDifficulty, Is.EquivalentTo(new Dictionary<string, int> { [BaseModels.Qwen7B] = 15 }));
    }

    [Test]
    public void Parquet_NestedSchemaWithCodeRowsAndDifficulties()
    {
        string path = PathOf("mixed.parquet");
        DataFiles.WriteParquet(path, MixedRows());
        var report = new DataLoadReport();

        AssertMixedRows(DatasetReader.Read(path, report));
        Assert.That(report.RowsRead, Is.EqualTo(3));
        Assert.That(report.TotalSkipped, Is.Zero, report.Summary());
    }

    [Test]
    public void JsonLines_SameFieldsGiveTheSameExamples()
    {
        string path = PathOf("mixed.jsonl");
        DataFiles.WriteJsonLines(path, MixedRows());
        var report = new DataLoadReport();

        AssertMixedRows(DatasetReader.Read(path, report));
        Assert.That(report.RowsAccepted, Is.EqualTo(3));
    }

    [Test]
    public void JsonLines_AndParquetAgreeOnIdsAndGroundTruths()
    {
        DataFiles.WriteJsonLines(PathOf("a.jsonl"), MixedRows());
        DataFiles.WriteParquet(PathOf("a.parquet"), MixedRows());
        var fromJson = DatasetReader.Read(PathOf("a.jsonl"), new DataLoadReport());
        var fromParquet = DatasetReader.Read(PathOf("a.parquet"), new DataLoadReport());

        Assert.That(fromParquet.Select(e => e.Id), Is.EqualTo(fromJson.Select(e => e.Id)));
        Assert.That(fromParquet.Select(e => e.GroundTruth.ToString()), Is.EqualTo(fromJson.Select(e => e.GroundTruth.ToString())));
        Assert.That(((CodeGroundTruth)fromParquet[1].GroundTruth).Tests.ToJsonString(),
            Is.EqualTo(((CodeGroundTruth)fromJson[1].GroundTruth).Tests.ToJsonString()));
    }

    [Test]
    public void JsonLines_GroundTruthMayBeStoredAsJsonRatherThanText()
    {
        var math = DataFiles.Row(index: 1);
        math["reward_model"]!["ground_truth"] = new JsonArray("7", "7.0");
        var code = DataFiles.Row("c", "Print.", "code", null, index: 2);
        code["reward_model"]!["ground_truth"] = new JsonObject { ["assert_case"] = new JsonArray("assert f()"), ["inputs"] = null };
        DataFiles.WriteJsonLines(PathOf("structured.jsonl"), [math, code]);

        var examples = DatasetReader.Read(PathOf("structured.jsonl"), new DataLoadReport());

        Assert.That(((MathGroundTruth)examples[0].GroundTruth).Answers, Is.EqualTo(new[] { "7", "7.0" }));
        Assert.That(((CodeGroundTruth)examples[1].GroundTruth).Keys, Is.EqualTo(new[] { "assert_case" }));
    }

    [Test]
    public void JsonLines_BlankLinesAreNotRowsAndRowNumbersAreLineNumbers()
    {
        string path = PathOf("blank.jsonl");
        File.WriteAllLines(path, ["", DataFiles.Row(index: 1).ToJsonString(), "   ", DataFiles.Row(ability: "biology", index: 2).ToJsonString()]);
        var report = new DataLoadReport();

        var examples = DatasetReader.Read(path, report);

        Assert.That(examples, Has.Count.EqualTo(1));
        Assert.That(report.RowsRead, Is.EqualTo(2));
        Assert.That(report.Samples.Single().Row, Is.EqualTo(4));
    }

    [Test]
    public void JsonLines_MultiTurnPromptKeepsRolesInOrder()
    {
        var row = DataFiles.Row(index: 5);
        row["prompt"] = new JsonArray(
            new JsonObject { ["role"] = "system", ["content"] = "Be brief." },
            new JsonObject { ["role"] = "user", ["content"] = "2+3?" });
        DataFiles.WriteJsonLines(PathOf("turns.jsonl"), [row]);

        var example = DatasetReader.Read(PathOf("turns.jsonl"), new DataLoadReport()).Single();

        Assert.That(example.Prompt.Select(m => m.Role), Is.EqualTo(new[] { "system", "user" }));
        Assert.That(example.ProblemText, Is.EqualTo("2+3?"));
    }

    [Test]
    public void ReadAll_ConcatenatesFilesInOrderIntoOneReport()
    {
        DataFiles.WriteJsonLines(PathOf("one.jsonl"), [DataFiles.Row("one", index: 1)]);
        DataFiles.WriteParquet(PathOf("two.parquet"), [DataFiles.Row("two", index: 1), DataFiles.Row("two", index: 2)]);
        var report = new DataLoadReport();

        var examples = DatasetReader.ReadAll([PathOf("one.jsonl"), PathOf("two.parquet")], report);

        Assert.That(examples.Select(e => e.Id), Is.EqualTo(new[] { "one/1", "two/1", "two/2" }));
        Assert.That(report.RowsRead, Is.EqualTo(3));
    }

    [Test]
    public void Parquet_SeveralRowGroupsAreReadInOrderWithRunningRowNumbers()
    {
        string path = PathOf("groups.parquet");
        var rows = Enumerable.Range(1, 7).Select(i => DataFiles.Row(index: i, ability: i == 5 ? "chemistry" : "math")).ToList();
        DataFiles.WriteParquet(path, rows, rowGroupSize: 3);
        Assert.That(DataFiles.RowGroupCount(path), Is.EqualTo(3), "the file must really have several row groups");
        var report = new DataLoadReport();

        var examples = DatasetReader.Read(path, report);

        Assert.That(examples.Select(e => e.Index), Is.EqualTo(new long?[] { 1, 2, 3, 4, 6, 7 }));
        Assert.That(report.RowsRead, Is.EqualTo(7));
        Assert.That(report.Samples.Single().Row, Is.EqualTo(5));
    }

    [Test]
    public async Task ReadAsync_ReadsParquet()
    {
        DataFiles.WriteParquet(PathOf("async.parquet"), MixedRows());
        var examples = await DatasetReader.ReadAsync(PathOf("async.parquet"), new DataLoadReport());
        Assert.That(examples, Has.Count.EqualTo(3));
    }

    // ---- files that cannot be read ----

    [Test]
    public void TextFileNamedParquetIsAClearError()
    {
        string path = PathOf("fake.parquet");
        File.WriteAllText(path, "data_source,prompt\nmath,hello\n");

        var e = Assert.Throws<DatasetFormatException>(() => DatasetReader.Read(path, new DataLoadReport()));

        Assert.That(e!.FilePath, Is.EqualTo(path));
        Assert.That(e.Message, Does.Contain(path).And.Contain("not a parquet file"));
    }

    [Test]
    public void TinyFileNamedParquetIsAClearError()
    {
        string path = PathOf("tiny.parquet");
        File.WriteAllText(path, "PAR1");
        var e = Assert.Throws<DatasetFormatException>(() => DatasetReader.Read(path, new DataLoadReport()));
        Assert.That(e!.Message, Does.Contain(path).And.Contain("not a parquet file"));
    }

    [Test]
    public void ParquetMagicAroundGarbageIsAClearError()
    {
        string path = PathOf("garbage.parquet");
        File.WriteAllBytes(path, [.. "PAR1"u8.ToArray(), .. Enumerable.Repeat((byte)0x5A, 64), 16, 0, 0, 0, .. "PAR1"u8.ToArray()]);

        var e = Assert.Throws<DatasetFormatException>(() => DatasetReader.Read(path, new DataLoadReport()));

        Assert.That(e!.Message, Does.Contain(path).And.Contain("cannot read"));
        Assert.That(e.InnerException, Is.Not.Null);
    }

    [TestCase("data.csv")]
    [TestCase("data.json")]
    [TestCase("data")]
    public void UnknownExtensionIsAClearError(string name)
    {
        string path = PathOf(name);
        File.WriteAllText(path, "{}");

        var e = Assert.Throws<DatasetFormatException>(() => DatasetReader.Read(path, new DataLoadReport()));

        Assert.That(e!.Message, Does.Contain(path).And.Contain("unsupported extension").And.Contain(".parquet or .jsonl"));
    }

    [TestCase("missing.parquet")]
    [TestCase("missing.jsonl")]
    public void MissingFileIsAClearError(string name)
    {
        string path = PathOf(name);
        var e = Assert.Throws<FileNotFoundException>(() => DatasetReader.Read(path, new DataLoadReport()));
        Assert.That(e!.Message, Does.Contain(path));
        Assert.That(e.FileName, Is.EqualTo(path));
    }

    [Test]
    public void ExtensionIsCaseInsensitive()
    {
        DataFiles.WriteParquet(PathOf("UPPER.PARQUET"), MixedRows());
        Assert.That(DatasetReader.Read(PathOf("UPPER.PARQUET"), new DataLoadReport()), Has.Count.EqualTo(3));
    }
}

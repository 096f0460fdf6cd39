using System.Text.Json.Nodes;
using OR1.Grpo.Data;

namespace OR1.Tests.Data;

/// <summary>Each kind of bad row is skipped, counted under its reason, and kept (file, row, why) for the log.</summary>
public class BadRowTests : TempFolderTest
{
    public sealed record BadRow(string Name, Func<JsonObject> Make, SkipReason Reason, string Why)
    {
        public override string ToString() => Name;
    }

    private static JsonObject With(Action<JsonObject> change)
    {
        var row = DataFiles.Row(index: 100);
        change(row);
        return row;
    }

    /// <summary>Bad rows that the parquet schema can hold too.</summary>
    public static IEnumerable<BadRow> SchemaRows()
    {
        yield return new("null prompt", () => DataFiles.Row(content: null), SkipReason.MissingPrompt, "no prompt");
        yield return new("empty prompt list", () => With(r => r["prompt"] = new JsonArray()), SkipReason.EmptyPrompt, "no messages");
        yield return new("blank prompt content", () => DataFiles.Row(content: "  \n"), SkipReason.EmptyPrompt, "blank");
        yield return new("unknown ability", () => DataFiles.Row(ability: "physics"), SkipReason.UnknownAbility, "unknown ability 'physics'");
        yield return new("null ability", () => DataFiles.Row(ability: null), SkipReason.UnknownAbility, "no ability");
        yield return new("null ground truth", () => DataFiles.Row(groundTruth: null), SkipReason.MissingGroundTruth, "ground_truth");
        yield return new("empty math answer list", () => DataFiles.Row(groundTruth: "[]"), SkipReason.UndecodableGroundTruth, "empty");
        yield return new("code ground truth not JSON", () => DataFiles.Row(ability: "code", groundTruth: "print(1)"), SkipReason.UndecodableGroundTruth, "not JSON");
        yield return new("code ground truth of no format", () => DataFiles.Row(ability: "code", groundTruth: "{\"x\": 1}"), SkipReason.UndecodableGroundTruth, "no known test format");
        yield return new("null data_source", () => DataFiles.Row(dataSource: null), SkipReason.MissingDataSource, "data_source");
    }

    /// <summary>Bad rows only JSON can express.</summary>
    public static IEnumerable<BadRow> JsonOnlyRows()
    {
        yield return new("prompt field absent", () => With(r => r.Remove("prompt")), SkipReason.MissingPrompt, "no prompt");
        yield return new("prompt is a string", () => With(r => r["prompt"] = "hello"), SkipReason.BadPromptMessage, "not a list");
        yield return new("message without role", () => With(r => r["prompt"] = new JsonArray(new JsonObject { ["content"] = "x" })), SkipReason.BadPromptMessage, "message 0");
        yield return new("message content a number", () => With(r => r["prompt"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = 3 })), SkipReason.BadPromptMessage, "no content string");
        yield return new("reward_model absent", () => With(r => r.Remove("reward_model")), SkipReason.MissingGroundTruth, "ground_truth");
        yield return new("index not an integer", () => With(r => r["extra_info"]!["index"] = "abc"), SkipReason.BadExtraInfo, "index");
        yield return new("difficulty not an integer", () => With(r => r["extra_info"]!["model_difficulty"]![BaseModels.Qwen7B] = 2.5), SkipReason.BadExtraInfo, "DeepSeek-R1-Distill-Qwen-7B");
        yield return new("extra_info a list", () => With(r => r["extra_info"] = new JsonArray()), SkipReason.BadExtraInfo, "not an object");
    }

    [TestCaseSource(nameof(SchemaRows))]
    [TestCaseSource(nameof(JsonOnlyRows))]
    public void JsonLines_BadRowIsSkippedAndCounted(BadRow bad)
    {
        string path = PathOf("bad.jsonl");
        DataFiles.WriteJsonLines(path, [DataFiles.Row(index: 1), bad.Make(), DataFiles.Row(index: 3)]);
        AssertSkippedSecondRow(path, bad);
    }

    [TestCaseSource(nameof(SchemaRows))]
    public void Parquet_BadRowIsSkippedAndCounted(BadRow bad)
    {
        string path = PathOf("bad.parquet");
        DataFiles.WriteParquet(path, [DataFiles.Row(index: 1), bad.Make(), DataFiles.Row(index: 3)]);
        AssertSkippedSecondRow(path, bad);
    }

    private static void AssertSkippedSecondRow(string path, BadRow bad)
    {
        var report = new DataLoadReport();

        var examples = DatasetReader.Read(path, report);

        Assert.That(examples.Select(e => e.Index), Is.EqualTo(new long?[] { 1, 3 }));
        Assert.That(report.RowsRead, Is.EqualTo(3));
        Assert.That(report.RowsAccepted, Is.EqualTo(2));
        Assert.That(report.TotalSkipped, Is.EqualTo(1));
        Assert.That(report.Count(bad.Reason), Is.EqualTo(1));
        var sample = report.Samples.Single();
        Assert.That(sample.File, Is.EqualTo(path));
        Assert.That(sample.Row, Is.EqualTo(2));
        Assert.That(sample.Reason, Is.EqualTo(bad.Reason));
        Assert.That(sample.Detail, Does.Contain(bad.Why));
        Assert.That(report.Summary(), Does.Contain(bad.Reason.ToString()).And.Contain(path));
    }

    [TestCase("{\"data_source\": \"x\", ")]
    [TestCase("[1, 2, 3]")]
    [TestCase("null")]
    [TestCase("not json at all")]
    public void JsonLines_LineThatIsNoObjectIsMalformed(string line)
    {
        string path = PathOf("malformed.jsonl");
        File.WriteAllLines(path, [DataFiles.Row(index: 1).ToJsonString(), line, DataFiles.Row(index: 3).ToJsonString()]);
        var report = new DataLoadReport();

        var examples = DatasetReader.Read(path, report);

        Assert.That(examples, Has.Count.EqualTo(2));
        Assert.That(report.Count(SkipReason.MalformedRow), Is.EqualTo(1));
        Assert.That(report.Samples.Single().Row, Is.EqualTo(2));
        Assert.That(report.RowsRead, Is.EqualTo(3));
    }

    [Test]
    public void OnlyTheFirstFewSkipsAreKeptButAllAreCounted()
    {
        string path = PathOf("many.jsonl");
        DataFiles.WriteJsonLines(path, Enumerable.Range(0, 25).Select(i => DataFiles.Row(ability: i % 2 == 0 ? "art" : null, index: i)));
        var report = new DataLoadReport(maxSamples: 4);

        var examples = DatasetReader.Read(path, report);

        Assert.That(examples, Is.Empty);
        Assert.That(report.Count(SkipReason.UnknownAbility), Is.EqualTo(25));
        Assert.That(report.Samples.Select(s => s.Row), Is.EqualTo(new long?[] { 1, 2, 3, 4 }));
        Assert.That(report.SkippedByReason, Is.EquivalentTo(new Dictionary<SkipReason, long> { [SkipReason.UnknownAbility] = 25 }));
    }
}

using OR1.Grpo.Data;
using static OR1.Tests.Data.DataTestExamples;

namespace OR1.Tests.Data;

public class DatasetFiltersTests
{
    [TestCase(0, false)]
    [TestCase(1, true)]
    [TestCase(8, true)]
    [TestCase(15, true)]
    [TestCase(16, false)]
    [TestCase(-1, false)]
    public void Difficulty_KeepsOneToFifteenInclusive(int level, bool kept)
    {
        var report = new DataLoadReport();
        var example = WithDifficulty(1, BaseModels.Qwen7B, level);

        var result = DatasetFilters.ByDifficulty([example], BaseModels.Qwen7B, report);

        Assert.That(result, Has.Count.EqualTo(kept ? 1 : 0));
        Assert.That(report.Count(SkipReason.DifficultyOutOfRange), Is.EqualTo(kept ? 0 : 1));
    }

    [Test]
    public void Difficulty_RowWithoutTheBaseModelKeyIsDropped()
    {
        var report = new DataLoadReport();
        var noDifficulty = Math(1);
        var otherModelOnly = WithDifficulty(2, BaseModels.Qwen32B, 5);

        var result = DatasetFilters.ByDifficulty([noDifficulty, otherModelOnly], BaseModels.Qwen7B, report);

        Assert.That(result, Is.Empty);
        Assert.That(report.Count(SkipReason.NoDifficultyForModel), Is.EqualTo(2));
        Assert.That(report.Samples.Select(s => s.ExampleId), Is.EqualTo(new[] { "m/1", "m/2" }));
        Assert.That(report.Samples[0].Detail, Does.Contain(BaseModels.Qwen7B));
    }

    [Test]
    public void Difficulty_UsesOnlyTheNamedBaseModel()
    {
        var example = Math(1, difficulty: new Dictionary<string, int> { [BaseModels.Qwen1_5B] = 16, [BaseModels.Qwen32B] = 0, [BaseModels.Qwen7B] = 4 });
        Assert.That(DatasetFilters.ByDifficulty([example], BaseModels.Qwen7B, new DataLoadReport()), Has.Count.EqualTo(1));
        Assert.That(DatasetFilters.ByDifficulty([example], BaseModels.Qwen1_5B, new DataLoadReport()), Is.Empty);
        Assert.That(DatasetFilters.ByDifficulty([example], BaseModels.Qwen32B, new DataLoadReport()), Is.Empty);
    }

    [Test]
    public void Difficulty_KeepsInputOrderAndHonoursACustomRange()
    {
        var examples = Enumerable.Range(0, 17).Select(level => WithDifficulty(level, BaseModels.Qwen1_5B, level)).ToList();
        var report = new DataLoadReport();

        var kept = DatasetFilters.ByDifficulty(examples, BaseModels.Qwen1_5B, report, min: 3, max: 5);

        Assert.That(kept.Select(e => e.Index), Is.EqualTo(new long?[] { 3, 4, 5 }));
        Assert.That(report.Count(SkipReason.DifficultyOutOfRange), Is.EqualTo(14));
    }

    [Test]
    public void Difficulty_ReadFromParquetEndToEnd()
    {
        string folder = Path.Combine(Path.GetTempPath(), "or1-data-filter-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        try
        {
            string path = Path.Combine(folder, "train.parquet");
            DataFiles.WriteParquet(path,
            [
                DataFiles.Row(index: 0, d7: 0),
                DataFiles.Row(index: 1, d7: 1),
                DataFiles.Row(index: 2, d7: 15),
                DataFiles.Row(index: 3, d7: 16),
                DataFiles.Row(index: 4, d7: null, d32: 7),
            ]);
            var report = new DataLoadReport();

            var kept = DatasetFilters.ByDifficulty(DatasetReader.Read(path, report), BaseModels.Qwen7B, report);

            Assert.That(kept.Select(e => e.Index), Is.EqualTo(new long?[] { 1, 2 }));
            Assert.That(report.Count(SkipReason.DifficultyOutOfRange), Is.EqualTo(2));
            Assert.That(report.Count(SkipReason.NoDifficultyForModel), Is.EqualTo(1));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Test]
    public void PromptLength_DropsOnlyPromptsLongerThanTheMaximum()
    {
        var examples = new[] { Math(9, text: new string('a', 9)), Math(10, text: new string('a', 10)), Math(11, text: new string('a', 11)) };
        var report = new DataLoadReport();
        var seen = new List<string>();

        var kept = DatasetFilters.ByPromptLength(examples, e => { seen.Add(e.Id); return e.Prompt[0].Content.Length; }, 10, report);

        Assert.That(kept.Select(e => e.Index), Is.EqualTo(new long?[] { 9, 10 }));
        Assert.That(seen, Is.EqualTo(new[] { "m/9", "m/10", "m/11" }));
        Assert.That(report.Count(SkipReason.PromptTooLong), Is.EqualTo(1));
        var sample = report.Samples.Single();
        Assert.That(sample.ExampleId, Is.EqualTo("m/11"));
        Assert.That(sample.Detail, Does.Contain("11 tokens").And.Contain("10"));
    }

    [Test]
    public void PromptLength_RejectsANonPositiveMaximum()
        => Assert.Throws<ArgumentOutOfRangeException>(() => DatasetFilters.ByPromptLength([Math(1)], _ => 1, 0, new DataLoadReport()));

    [Test]
    public void RecipeDefaults()
    {
        Assert.That(DatasetFilters.MinDifficulty, Is.EqualTo(1));
        Assert.That(DatasetFilters.MaxDifficulty, Is.EqualTo(15));
        Assert.That(DatasetFilters.DefaultMaxPromptTokens, Is.EqualTo(2048));
    }
}

using OR1.Grpo.Data;

namespace OR1.Tests.Data;

/// <summary>The reader on the two real evaluation files (nested parquet columns written by pyarrow).</summary>
public class AimeParquetTests
{
    private const string BoxedInstruction = "Let's think step by step and output the final answer within \\boxed{}.";

    [Test]
    public void Aime24_HasThirtyMathRowsAndNoSkips()
    {
        var report = new DataLoadReport();
        var examples = DatasetReader.Read(DataFiles.EvalFile(DataFiles.Aime24), report);

        Assert.That(examples, Has.Count.EqualTo(30));
        Assert.That(report.RowsRead, Is.EqualTo(30));
        Assert.That(report.RowsAccepted, Is.EqualTo(30));
        Assert.That(report.TotalSkipped, Is.Zero, report.Summary());
        Assert.That(examples.Select(e => e.DataSource), Is.All.EqualTo("test-math-aime24"));
        Assert.That(examples.Select(e => e.Ability), Is.All.EqualTo(Abilities.Math));
        Assert.That(examples.Select(e => e.Split), Is.All.EqualTo("test"));
        Assert.That(examples.Select(e => e.GroundTruth), Is.All.InstanceOf<MathGroundTruth>());
        Assert.That(examples.Select(e => e.ModelDifficulty.Count), Is.All.Zero);
    }

    [Test]
    public void Aime24_FirstPromptIsOneUserTurnEndingWithTheBoxedInstruction()
    {
        var examples = DatasetReader.Read(DataFiles.EvalFile(DataFiles.Aime24), new DataLoadReport());

        var first = examples[0];
        Assert.That(first.Prompt, Has.Count.EqualTo(1));
        Assert.That(first.Prompt[0].Role, Is.EqualTo("user"));
        Assert.That(first.Prompt[0].Content, Does.StartWith("Every morning Aya goes for a $9$-kilometer-long walk and stops at a coffee shop afterwards."));
        Assert.That(first.Prompt[0].Content, Does.EndWith(" " + BoxedInstruction));
        Assert.That(first.Prompt[0].Content, Has.Length.EqualTo(590));
        Assert.That(examples.Select(e => e.Prompt[0].Content), Is.All.EndWith(BoxedInstruction));
    }

    [Test]
    public void Aime24_GroundTruthsDecodeAsPlainAnswersKeepingLeadingZeros()
    {
        var examples = DatasetReader.Read(DataFiles.EvalFile(DataFiles.Aime24), new DataLoadReport());

        Assert.That(((MathGroundTruth)examples[0].GroundTruth).Answers, Is.EqualTo(new[] { "204" }));
        Assert.That(((MathGroundTruth)examples[1].GroundTruth).Answers, Is.EqualTo(new[] { "025" }));
        Assert.That(((MathGroundTruth)examples[29].GroundTruth).Answers, Is.EqualTo(new[] { "315" }));
        Assert.That(examples.Select(e => ((MathGroundTruth)e.GroundTruth).Answers.Count), Is.All.EqualTo(1));
    }

    [Test]
    public void Aime24_IndicesAndIdsComeFromExtraInfo()
    {
        var examples = DatasetReader.Read(DataFiles.EvalFile(DataFiles.Aime24), new DataLoadReport());

        Assert.That(examples.Select(e => e.Index), Is.EqualTo(Enumerable.Range(0, 30).Select(i => (long?)i)));
        Assert.That(examples[0].Id, Is.EqualTo("test-math-aime24/0"));
        Assert.That(examples[29].Id, Is.EqualTo("test-math-aime24/29"));
    }

    [Test]
    public void Aime25_HasThirtyRowsWithoutIndexAndPromptHashIds()
    {
        var report = new DataLoadReport();
        var examples = DatasetReader.Read(DataFiles.EvalFile(DataFiles.Aime25), report);

        Assert.That(examples, Has.Count.EqualTo(30));
        Assert.That(report.TotalSkipped, Is.Zero, report.Summary());
        Assert.That(examples.Select(e => e.Index), Is.All.Null);
        Assert.That(examples.Select(e => e.Id), Is.All.StartWith("test-math-aime25/sha256:"));
        Assert.That(examples.Select(e => e.Id).Distinct().Count(), Is.EqualTo(30));
        // SHA-256 of "user\0<content>\0", first 8 bytes, computed outside this code base.
        Assert.That(examples[0].Id, Is.EqualTo("test-math-aime25/sha256:87023a535f97c219"));
    }

    [Test]
    public void Aime25_PromptsHaveNoBoxedInstructionAndTheDegreeAnswerIsKept()
    {
        var examples = DatasetReader.Read(DataFiles.EvalFile(DataFiles.Aime25), new DataLoadReport());

        Assert.That(examples[0].Prompt.Single().Content,
            Is.EqualTo("Find the sum of all integer bases $b>9$ for which $17_{b}$ is a divisor of $97_{b}$."));
        Assert.That(examples.Select(e => e.Prompt[0].Content), Has.None.Contains("\\boxed{}"));
        Assert.That(((MathGroundTruth)examples[0].GroundTruth).Answers, Is.EqualTo(new[] { "70" }));
        Assert.That(((MathGroundTruth)examples[19].GroundTruth).Answers, Is.EqualTo(new[] { "336^\\circ" }));
        Assert.That(examples.SelectMany(e => ((MathGroundTruth)e.GroundTruth).Answers), Does.Contain("336^\\circ"));
    }

    [Test]
    public void Aime_IdsAreTheSameOnEveryRead()
    {
        var first = DatasetReader.Read(DataFiles.EvalFile(DataFiles.Aime25), new DataLoadReport()).Select(e => e.Id).ToList();
        var second = DatasetReader.Read(DataFiles.EvalFile(DataFiles.Aime25), new DataLoadReport()).Select(e => e.Id).ToList();
        Assert.That(second, Is.EqualTo(first));
    }

    [Test]
    public void Aime_DifficultyFilterDropsEveryEvalRowForLackOfDifficulty()
    {
        var report = new DataLoadReport();
        var examples = DatasetReader.Read(DataFiles.EvalFile(DataFiles.Aime24), report);

        var kept = DatasetFilters.ByDifficulty(examples, BaseModels.Qwen7B, report);

        Assert.That(kept, Is.Empty);
        Assert.That(report.Count(SkipReason.NoDifficultyForModel), Is.EqualTo(30));
    }
}

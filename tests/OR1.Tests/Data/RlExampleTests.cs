using System.Text.Json.Nodes;
using OR1.Grpo.Data;

namespace OR1.Tests.Data;

public class RlExampleTests
{
    private static readonly PromptMessage[] OnePrompt = [new("user", "What is 1+1?")];

    [Test]
    public void IdIsDataSourceAndIndex()
        => Assert.That(new RlExample("src", OnePrompt, "math", new MathGroundTruth(["2"]), index: 42).Id, Is.EqualTo("src/42"));

    [Test]
    public void IdWithoutIndexIsAPromptHash()
    {
        // SHA-256 of "user\0What is 1+1?\0", first 8 bytes, computed outside this code base.
        var example = new RlExample("src", OnePrompt, "math", new MathGroundTruth(["2"]));
        Assert.That(example.Id, Is.EqualTo("src/sha256:67fb27398cf00248"));
    }

    [Test]
    public void PromptHashDependsOnRoleAndContent()
    {
        var gt = new MathGroundTruth(["2"]);
        string id = new RlExample("s", OnePrompt, "math", gt).Id;
        Assert.That(new RlExample("s", [new PromptMessage("system", "What is 1+1?")], "math", gt).Id, Is.Not.EqualTo(id));
        Assert.That(new RlExample("s", [new PromptMessage("user", "What is 1+2?")], "math", gt).Id, Is.Not.EqualTo(id));
        Assert.That(new RlExample("t", OnePrompt, "math", gt).Id, Is.Not.EqualTo(id));
    }

    [Test]
    public void AbilityIsNormalised()
    {
        var example = new RlExample("s", OnePrompt, " MATH ", new MathGroundTruth(["2"]));
        Assert.That(example.Ability, Is.EqualTo(Abilities.Math));
        Assert.That(example.IsMath, Is.True);
        Assert.That(example.IsCode, Is.False);
    }

    [Test]
    public void GroundTruthMustMatchTheAbility()
    {
        var code = new CodeGroundTruth(new JsonObject { ["assert_case"] = new JsonArray("assert 1") });
        Assert.Throws<ArgumentException>(() => _ = new RlExample("s", OnePrompt, "math", code));
        Assert.Throws<ArgumentException>(() => _ = new RlExample("s", OnePrompt, "code", new MathGroundTruth(["1"])));
        Assert.That(new RlExample("s", OnePrompt, "code", code).IsCode, Is.True);
    }

    [Test]
    public void EmptyPromptAndUnknownAbilityAreRejected()
    {
        Assert.Throws<ArgumentException>(() => _ = new RlExample("s", [], "math", new MathGroundTruth(["1"])));
        Assert.Throws<ArgumentException>(() => _ = new RlExample("s", OnePrompt, "poetry", new MathGroundTruth(["1"])));
    }

    [Test]
    public void MissingDifficultyIsAnEmptyDictionary()
        => Assert.That(new RlExample("s", OnePrompt, "math", new MathGroundTruth(["1"])).ModelDifficulty, Is.Empty);
}

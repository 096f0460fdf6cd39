using System.Text.Json.Nodes;
using OR1.Grpo.Data;

namespace OR1.Tests.Data;

/// <summary>Examples built in memory for the filter, mix and sampler tests.</summary>
internal static class DataTestExamples
{
    public static RlExample Math(int index, string source = "m", IReadOnlyDictionary<string, int>? difficulty = null, string? text = null)
        => new(source, [new PromptMessage("user", text ?? $"math problem {index}")], Abilities.Math,
            new MathGroundTruth([index.ToString(System.Globalization.CultureInfo.InvariantCulture)]), index, difficulty);

    public static RlExample Code(int index, string source = "c")
        => new(source, [new PromptMessage("user", $"code problem {index}")], Abilities.Code,
            new CodeGroundTruth(new JsonObject { ["assert_case"] = new JsonArray("assert True") }), index);

    public static RlExample WithDifficulty(int index, string model, int level)
        => Math(index, difficulty: new Dictionary<string, int> { [model] = level });

    public static List<RlExample> Maths(int count) => Enumerable.Range(0, count).Select(i => Math(i)).ToList();
}

using System.Text.Json.Nodes;
using OR1.Grpo.Data;

namespace OR1.Tests.Data;

public class GroundTruthDecoderTests
{
    private static IReadOnlyList<string> MathAnswers(string raw)
    {
        bool ok = GroundTruthDecoder.TryDecode("math", raw, out var gt, out var error);
        Assert.That(ok, Is.True, error);
        Assert.That(gt, Is.InstanceOf<MathGroundTruth>());
        return ((MathGroundTruth)gt!).Answers;
    }

    private static JsonObject CodeTests(string raw)
    {
        bool ok = GroundTruthDecoder.TryDecode("code", raw, out var gt, out var error);
        Assert.That(ok, Is.True, error);
        Assert.That(gt, Is.InstanceOf<CodeGroundTruth>());
        return ((CodeGroundTruth)gt!).Tests;
    }

    private static string Undecodable(string ability, string raw)
    {
        bool ok = GroundTruthDecoder.TryDecode(ability, raw, out var gt, out var error);
        Assert.That(ok, Is.False, $"decoded as {gt}");
        Assert.That(gt, Is.Null);
        Assert.That(error, Is.Not.Null.And.Not.Empty);
        return error!;
    }

    // ---- math ----

    [Test]
    public void Math_JsonListOfOneAnswer() => Assert.That(MathAnswers("[\"5\"]"), Is.EqualTo(new[] { "5" }));

    [Test]
    public void Math_JsonListOfSeveralAnswersKeepsOrder()
        => Assert.That(MathAnswers("[\"\\\\frac{1}{2}\", \"0.5\"]"), Is.EqualTo(new[] { "\\frac{1}{2}", "0.5" }));

    [Test]
    public void Math_JsonListOfNumbersKeepsTheirSpelling()
        => Assert.That(MathAnswers("[1, 2.50, -3e2]"), Is.EqualTo(new[] { "1", "2.50", "-3e2" }));

    [Test]
    public void Math_PlainNumberIsOneAnswerAsWritten() => Assert.That(MathAnswers("204"), Is.EqualTo(new[] { "204" }));

    [Test]
    public void Math_LeadingZeroIsNotJsonAndStaysAsWritten() => Assert.That(MathAnswers("025"), Is.EqualTo(new[] { "025" }));

    [Test]
    public void Math_LatexIsOneAnswer() => Assert.That(MathAnswers("336^\\circ"), Is.EqualTo(new[] { "336^\\circ" }));

    [Test]
    public void Math_JsonStringIsOneAnswerDecodedOnce()
        => Assert.That(MathAnswers("\"\\\\frac{1}{2}\""), Is.EqualTo(new[] { "\\frac{1}{2}" }));

    [Test]
    public void Math_SurroundingWhiteSpaceIsTrimmed() => Assert.That(MathAnswers("  7 \n"), Is.EqualTo(new[] { "7" }));

    [Test]
    public void Math_GivenAsJsonArrayNode()
    {
        bool ok = GroundTruthDecoder.TryDecode("math", new JsonArray("3", "4"), out var gt, out var error);
        Assert.That(ok, Is.True, error);
        Assert.That(((MathGroundTruth)gt!).Answers, Is.EqualTo(new[] { "3", "4" }));
    }

    [Test]
    public void Math_GivenAsJsonNumberNode()
    {
        bool ok = GroundTruthDecoder.TryDecode("math", JsonNode.Parse("42"), out var gt, out var error);
        Assert.That(ok, Is.True, error);
        Assert.That(((MathGroundTruth)gt!).Answers, Is.EqualTo(new[] { "42" }));
    }

    [TestCase("", "empty")]
    [TestCase("   ", "empty")]
    [TestCase("[]", "empty")]
    [TestCase("null", "null")]
    [TestCase("{\"answer\": \"5\"}", "object")]
    [TestCase("[[\"5\"]]", "not a string or a number")]
    [TestCase("[\"5\", null]", "not a string or a number")]
    [TestCase("[\"\"]", "empty")]
    [TestCase("\"\"", "empty")]
    public void Math_Undecodable(string raw, string why)
        => Assert.That(Undecodable("math", raw), Does.Contain(why));

    [Test]
    public void Math_NullTextIsUndecodable()
    {
        Assert.That(GroundTruthDecoder.TryDecode("math", (string?)null, out _, out var error), Is.False);
        Assert.That(error, Does.Contain("null"));
    }

    // ---- code ----

    [Test]
    public void Code_LeetCodeFormatWithNullImportPrefixRemoved()
    {
        var tests = CodeTests("{\"import_prefix\": null, \"test_code\": \"def check(f):\\n    assert f(1) == 2\", \"entry_point\": \"Solution().f\"}");
        Assert.That(tests.Select(p => p.Key), Is.EquivalentTo(new[] { "test_code", "entry_point" }));
        Assert.That(tests["test_code"]!.GetValue<string>(), Is.EqualTo("def check(f):\n    assert f(1) == 2"));
        Assert.That(tests["entry_point"]!.GetValue<string>(), Is.EqualTo("Solution().f"));
    }

    [Test]
    public void Code_LeetCodeFormatWithImportPrefixKept()
    {
        var tests = CodeTests("{\"import_prefix\": \"import math\\n\", \"test_code\": \"def check(f): pass\", \"entry_point\": \"f\"}");
        Assert.That(tests.Select(p => p.Key), Is.EquivalentTo(new[] { "import_prefix", "test_code", "entry_point" }));
    }

    [Test]
    public void Code_StdinStdoutFormatWithNullFnNameRemoved()
    {
        var tests = CodeTests("{\"inputs\": [\"1 2\\n\", \"3 4\\n\"], \"outputs\": [\"3\\n\", \"7\\n\"], \"fn_name\": null}");
        Assert.That(tests.Select(p => p.Key), Is.EquivalentTo(new[] { "inputs", "outputs" }));
        Assert.That(tests["outputs"]!.AsArray().Select(n => n!.GetValue<string>()), Is.EqualTo(new[] { "3\n", "7\n" }));
    }

    [Test]
    public void Code_CallBasedFormatKeepsFnName()
    {
        var tests = CodeTests("{\"inputs\": [[1, 2]], \"outputs\": [3], \"fn_name\": \"add\"}");
        Assert.That(tests.Select(p => p.Key), Is.EquivalentTo(new[] { "inputs", "outputs", "fn_name" }));
        Assert.That(tests["fn_name"]!.GetValue<string>(), Is.EqualTo("add"));
    }

    [Test]
    public void Code_EmptyFnNameIsRemovedLikeNull()
    {
        var tests = CodeTests("{\"inputs\": [\"1\"], \"outputs\": [\"1\"], \"fn_name\": \"\"}");
        Assert.That(tests.Select(p => p.Key), Is.EquivalentTo(new[] { "inputs", "outputs" }));
    }

    [Test]
    public void Code_AssertFormat()
    {
        var tests = CodeTests("{\"assert_case\": [\"assert f(1) == 1\", \"assert f(2) == 4\"]}");
        Assert.That(tests.Select(p => p.Key), Is.EqualTo(new[] { "assert_case" }));
        Assert.That(tests["assert_case"]!.AsArray(), Has.Count.EqualTo(2));
    }

    [Test]
    public void Code_UnifiedSchemaRowWithEveryKeyKeepsOnlyTheNonNullFormat()
    {
        var tests = CodeTests("{\"import_prefix\": null, \"test_code\": null, \"entry_point\": null, \"inputs\": [\"1\"], "
            + "\"outputs\": [\"2\"], \"fn_name\": null, \"assert_case\": null}");
        Assert.That(tests.Select(p => p.Key), Is.EquivalentTo(new[] { "inputs", "outputs" }));
    }

    [Test]
    public void Code_JsonStringEncodingAnObject()
    {
        string inner = "{\"assert_case\": [\"assert f() == 0\"], \"inputs\": null}";
        var tests = CodeTests(System.Text.Json.JsonSerializer.Serialize(inner));
        Assert.That(tests.Select(p => p.Key), Is.EqualTo(new[] { "assert_case" }));
    }

    [Test]
    public void Code_ListOfOneObject()
    {
        var tests = CodeTests("[{\"inputs\": [\"x\"], \"outputs\": [\"y\"], \"fn_name\": null}]");
        Assert.That(tests.Select(p => p.Key), Is.EquivalentTo(new[] { "inputs", "outputs" }));
    }

    [Test]
    public void Code_ListOfOneStringEncodingAnObject()
    {
        string inner = "{\"test_code\": \"def check(f): pass\", \"entry_point\": \"f\", \"import_prefix\": null}";
        var tests = CodeTests(new JsonArray(inner).ToJsonString());
        Assert.That(tests.Select(p => p.Key), Is.EquivalentTo(new[] { "test_code", "entry_point" }));
    }

    [Test]
    public void Code_GivenAsJsonObjectNodeIsCopiedNotShared()
    {
        var node = new JsonObject { ["assert_case"] = new JsonArray("assert True"), ["fn_name"] = null };
        bool ok = GroundTruthDecoder.TryDecode("code", node, out var gt, out var error);
        Assert.That(ok, Is.True, error);
        var tests = ((CodeGroundTruth)gt!).Tests;
        Assert.That(tests.Select(p => p.Key), Is.EqualTo(new[] { "assert_case" }));
        Assert.That(node, Has.Count.EqualTo(2), "the input object is left as it was");
    }

    [TestCase("def f(): pass", "not JSON")]
    [TestCase("42", "not a number")]
    [TestCase("[{\"assert_case\": [\"a\"]}, {\"assert_case\": [\"b\"]}]", "list of 2")]
    [TestCase("{}", "no non-null keys")]
    [TestCase("{\"inputs\": null, \"outputs\": null}", "no non-null keys")]
    [TestCase("{\"assert_case\": [\"assert 1\"], \"inputs\": [\"1\"], \"outputs\": [\"1\"]}", "mix test formats")]
    [TestCase("{\"inputs\": [\"1\"], \"outputs\": [\"1\"], \"timeout\": 3}", "unexpected key")]
    [TestCase("{\"solution\": \"x\"}", "no known test format")]
    [TestCase("{\"inputs\": [\"1\", \"2\"], \"outputs\": [\"1\"]}", "2 inputs but 1 outputs")]
    [TestCase("{\"inputs\": [], \"outputs\": []}", "no test case")]
    [TestCase("{\"inputs\": \"1\", \"outputs\": [\"1\"]}", "'inputs' must be a list")]
    [TestCase("{\"outputs\": [\"1\"]}", "needs 'inputs'")]
    [TestCase("{\"inputs\": [\"1\"], \"outputs\": [\"1\"], \"fn_name\": 3}", "'fn_name' must be a string")]
    [TestCase("{\"assert_case\": [1, 2]}", "must be a string")]
    [TestCase("{\"assert_case\": []}", "no test case")]
    [TestCase("{\"test_code\": \"def check(f): pass\"}", "needs 'entry_point'")]
    [TestCase("{\"test_code\": 5, \"entry_point\": \"f\"}", "'test_code' must be a string")]
    [TestCase("null", "null")]
    public void Code_Undecodable(string raw, string why)
        => Assert.That(Undecodable("code", raw), Does.Contain(why));

    // ---- entry points ----

    [Test]
    public void UnknownAbilityIsAnError()
        => Assert.That(Undecodable("physics", "[\"5\"]"), Does.Contain("unknown ability 'physics'"));

    [Test]
    public void AbilityIsCaseInsensitive()
        => Assert.That(GroundTruthDecoder.TryDecode("Math", "3", out var gt, out _) && gt is MathGroundTruth, Is.True);

    [Test]
    public void DecodeThrowsFormatExceptionWithTheReason()
    {
        var e = Assert.Throws<FormatException>(() => GroundTruthDecoder.Decode("code", "{}"));
        Assert.That(e!.Message, Does.Contain("code ground truth").And.Contain("no non-null keys"));
    }

    [Test]
    public void DecodeReturnsTheValue()
        => Assert.That(((MathGroundTruth)GroundTruthDecoder.Decode("math", "[\"9\"]")).Answers, Is.EqualTo(new[] { "9" }));
}

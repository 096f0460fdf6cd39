using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using OR1.Grpo.Data;

namespace OR1.Grpo.Rewards.Code;

/// <summary>
/// The tests of one <see cref="CodeGroundTruth"/>, as programs to run in order (stop at the first failure):
/// one program per case for stdin/stdout and call-based tests, one program for a LeetCode check, one program
/// for all assert cases (its time limit is the per-test limit times the number of asserts).
/// </summary>
public sealed class CodeTestSuite
{
    private readonly JsonObject _tests;

    private CodeTestSuite(CodeTestFormat format, JsonObject tests, int count)
    {
        Format = format;
        _tests = tests;
        Count = count;
    }

    /// <summary>The format, from the keys present.</summary>
    public CodeTestFormat Format { get; }

    /// <summary>Test cases (asserts for <see cref="CodeTestFormat.AssertCases"/>, 1 for LeetCode).</summary>
    public int Count { get; }

    /// <summary>Programs run for this suite.</summary>
    public int ProgramCount => Format is CodeTestFormat.StandardIO or CodeTestFormat.CallBased ? Count : 1;

    /// <summary>Reads the test object (already validated by <see cref="GroundTruthDecoder"/>; checked again here).</summary>
    /// <exception cref="FormatException">no runnable test.</exception>
    public static CodeTestSuite From(CodeGroundTruth truth)
    {
        var tests = truth.Tests;
        if (tests.ContainsKey("test_code") || tests.ContainsKey("entry_point"))
        {
            if (String(tests, "test_code") is null || String(tests, "entry_point") is null)
                throw new FormatException("the LeetCode format needs string 'test_code' and 'entry_point'");
            return new CodeTestSuite(CodeTestFormat.LeetCode, tests, 1);
        }
        if (tests.ContainsKey("assert_case"))
        {
            if (tests["assert_case"] is not JsonArray asserts || asserts.Count == 0 || asserts.Any(a => a is not JsonValue v || v.GetValueKind() != JsonValueKind.String))
                throw new FormatException("'assert_case' must be a non-empty list of strings");
            return new CodeTestSuite(CodeTestFormat.AssertCases, tests, asserts.Count);
        }
        if (tests["inputs"] is JsonArray inputs && tests["outputs"] is JsonArray outputs)
        {
            if (inputs.Count == 0 || inputs.Count != outputs.Count)
                throw new FormatException($"{inputs.Count} inputs and {outputs.Count} outputs: no runnable test");
            bool call = String(tests, "fn_name") is { Length: > 0 };
            return new CodeTestSuite(call ? CodeTestFormat.CallBased : CodeTestFormat.StandardIO, tests, inputs.Count);
        }
        throw new FormatException($"no known test format in {{{string.Join(", ", truth.Keys)}}}");
    }

    /// <summary>The short name used in reasons.</summary>
    public string FormatName => Format switch
    {
        CodeTestFormat.StandardIO => "stdin/stdout",
        CodeTestFormat.CallBased => "call-based",
        CodeTestFormat.LeetCode => "LeetCode check",
        _ => "assert cases",
    };

    /// <summary>The program of test <paramref name="index"/> (0-based; &lt; <see cref="ProgramCount"/>).</summary>
    internal TestRun Program(int index, string solution, SandboxOptions options)
    {
        string nonce = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
        switch (Format)
        {
            case CodeTestFormat.StandardIO:
            {
                string expected = Text(((JsonArray)_tests["outputs"]!)[index]);
                int cap = (int)System.Math.Min(int.MaxValue / 2, System.Math.Max(options.MaxOutputBytes, 2L * expected.Length + 4096));
                var program = new SandboxProgram(new Dictionary<string, string> { ["main.py"] = solution }, "main.py",
                    Text(((JsonArray)_tests["inputs"]!)[index]), MaxOutputBytes: cap);
                return new TestRun(program, expected, null);
            }
            case CodeTestFormat.CallBased:
                return Harness(solution, nonce, new JsonObject
                {
                    ["format"] = "call",
                    ["fn_name"] = String(_tests, "fn_name"),
                    ["input"] = ((JsonArray)_tests["inputs"]!)[index]?.DeepClone(),
                    ["output"] = ((JsonArray)_tests["outputs"]!)[index]?.DeepClone(),
                }, null);
            case CodeTestFormat.LeetCode:
                return Harness(solution, nonce, new JsonObject
                {
                    ["format"] = "leetcode",
                    ["import_prefix"] = String(_tests, "import_prefix") ?? "",
                    ["test_code"] = String(_tests, "test_code"),
                    ["entry_point"] = String(_tests, "entry_point")!.Trim(),
                }, null);
            default:
                var asserts = (JsonArray)_tests["assert_case"]!;
                return Harness(solution, nonce, new JsonObject
                {
                    ["format"] = "assert",
                    ["asserts"] = asserts.DeepClone(),
                }, options.TimeLimit * asserts.Count);
        }
    }

    private static TestRun Harness(string solution, string nonce, JsonObject spec, TimeSpan? timeLimit)
    {
        var files = new Dictionary<string, string>
        {
            [PythonHarness.SolutionFile] = solution,
            [PythonHarness.FileName] = PythonHarness.Source,
        };
        var program = new SandboxProgram(files, PythonHarness.FileName, nonce + "\n" + spec.ToJsonString(), timeLimit);
        return new TestRun(program, null, nonce);
    }

    /// <summary>Stdin or expected stdout: a string as is, a list as its lines, anything else as JSON text.</summary>
    private static string Text(JsonNode? node) => node switch
    {
        null => "",
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        JsonArray lines => string.Concat(lines.Select(l => Text(l) + "\n")),
        _ => node.ToJsonString(),
    };

    private static string? String(JsonObject tests, string key) =>
        tests[key] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : null;
}

/// <summary>One program of a suite: what to run, and what to check its result against.</summary>
/// <param name="Program">The program.</param>
/// <param name="ExpectedStdout">For stdin/stdout tests, the expected output.</param>
/// <param name="Nonce">For harness tests, the tag of the verdict line.</param>
internal sealed record TestRun(SandboxProgram Program, string? ExpectedStdout, string? Nonce);

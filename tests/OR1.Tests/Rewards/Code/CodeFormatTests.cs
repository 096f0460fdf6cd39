using System.Diagnostics;
using OR1.Grpo.Rewards.Code;
using static OR1.Tests.Rewards.Code.SandboxRequirement;

namespace OR1.Tests.Rewards.Code;

/// <summary>Correct and wrong solutions in each of the four test formats, run in the real sandbox.</summary>
[TestFixture]
public sealed class CodeFormatTests
{
    private CodeReward _reward = null!;

    [OneTimeSetUp]
    public void Create()
    {
        RequireTools();
        _reward = new CodeReward(new CodeRewardOptions { MaxConcurrentPrograms = 2 });
    }

    private CodeVerdict Evaluate(string code, string tests) => _reward.Evaluate(Answer(code), Truth(tests));

    private static void Expect(CodeVerdict verdict, CodeOutcome outcome, string reasonPart)
    {
        Assert.That(verdict.Outcome, Is.EqualTo(outcome), verdict.Reason);
        Assert.That(verdict.Reason, Does.Contain(reasonPart));
        Assert.That(verdict.ToReward().Score, Is.EqualTo(outcome == CodeOutcome.Passed ? 1.0 : 0.0));
    }

    // ---- stdin/stdout ----

    private const string SumTests = """{"inputs": ["1 2\n", "10 20\n", "-5 5\n"], "outputs": ["3\n", "30\n", "0\n"]}""";

    [Test]
    public void StdinCorrect() =>
        Expect(Evaluate("a, b = map(int, input().split())\nprint(a + b)", SumTests), CodeOutcome.Passed, "passed: all 3 tests (stdin/stdout)");

    [Test]
    public void StdinWrongGivesTheFirstDifferingLine() =>
        Expect(Evaluate("a, b = map(int, input().split())\nprint(a - b)", SumTests), CodeOutcome.WrongAnswer,
            "wrong answer on test 1/3: line 1: expected '3', got '-1'");

    [Test]
    public void StdinStopsAtTheFirstFailure()
    {
        // Test 2 fails; test 3 would loop until the 6 s limit if it ran.
        string tests = """{"inputs": ["1", "2", "3"], "outputs": ["1", "999", "3"]}""";
        var clock = Stopwatch.StartNew();
        var verdict = Evaluate("n = int(input())\nwhile n == 3:\n    pass\nprint(n)", tests);
        Expect(verdict, CodeOutcome.WrongAnswer, "on test 2/3: line 1: expected '999', got '2'");
        Assert.That(verdict.TestsPassed, Is.EqualTo(1));
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(5)), "test 3 must not run");
    }

    [Test]
    public void StdinBlankLinesInsideTheOutputCount() =>
        Expect(Evaluate("n = int(input())\nprint('  ', n / 2, ' ')\nprint()\nprint('done')", """{"inputs": ["1"], "outputs": ["0.50\ndone\n"]}"""),
            CodeOutcome.WrongAnswer, "line 2: expected 'done', got ''");

    [Test]
    public void StdinNumericTokensEqualAsDecimals() =>
        Expect(Evaluate("n = int(input())\nprint(n / 2, 'x')\nprint('done')", """{"inputs": ["1"], "outputs": ["0.50 x\ndone\n"]}"""),
            CodeOutcome.Passed, "passed");

    [Test]
    public void StdinInputsAndOutputsGivenAsLists() =>
        Expect(Evaluate("import sys\nrows = sys.stdin.read().split()\nprint(len(rows))\nprint(*rows)",
                """{"inputs": [["a", "b", "c"]], "outputs": [["3", "a b c"]]}"""),
            CodeOutcome.Passed, "passed: 1 test");

    [Test]
    public void StdinRuntimeErrorGivesTheLastLinesOfStderr() =>
        Expect(Evaluate("x = int(input())\nraise ValueError('bad input %d' % x)", """{"inputs": ["7"], "outputs": ["7"]}"""),
            CodeOutcome.RuntimeError, "ValueError: bad input 7");

    [Test]
    public void StdinNonZeroExitIsARuntimeError() =>
        Expect(Evaluate("import sys\nprint(7)\nsys.exit(3)", """{"inputs": ["7"], "outputs": ["7"]}"""),
            CodeOutcome.RuntimeError, "exit code 3");

    [Test]
    public void SyntaxErrorIsARuntimeError() =>
        Expect(Evaluate("def broken(:\n    pass", SumTests), CodeOutcome.RuntimeError, "SyntaxError");

    [Test]
    public void NoPythonBlockScoresZeroWithAReason()
    {
        var verdict = _reward.Evaluate("I think the answer is print(3)", Truth(SumTests));
        Expect(verdict, CodeOutcome.NoCode, "no ```python block");
    }

    // ---- call-based ----

    private const string AddTests = """{"fn_name": "add", "inputs": [[1, 2], [3, 4], [[1], [2]]], "outputs": [3, 7, [1, 2]]}""";

    [Test]
    public void CallBasedCorrectFunction() =>
        Expect(Evaluate("def add(a, b):\n    return a + b", AddTests), CodeOutcome.Passed, "passed: all 3 tests (call-based)");

    [Test]
    public void CallBasedCorrectSolutionMethod() =>
        Expect(Evaluate("class Solution:\n    def add(self, a, b):\n        print('debug output is ignored')\n        return a + b", AddTests),
            CodeOutcome.Passed, "passed");

    [Test]
    public void CallBasedWrong() =>
        Expect(Evaluate("def add(a, b):\n    return a - b", AddTests), CodeOutcome.WrongAnswer, "wrong answer on test 1/3: expected 3, got -1");

    [Test]
    public void CallBasedArgumentsAsJsonLinesAndTuplesAsLists() =>
        Expect(Evaluate("def pair(a, b):\n    return (b, a)",
                """{"fn_name": "pair", "inputs": ["\"x\"\n[1, 2]"], "outputs": ["[[1, 2], \"x\"]"]}"""),
            CodeOutcome.Passed, "passed");

    [Test]
    public void CallBasedMissingFunction() =>
        Expect(Evaluate("def plus(a, b):\n    return a + b", AddTests), CodeOutcome.RuntimeError, "defines no function or Solution method 'add'");

    [Test]
    public void CallBasedExceptionIsARuntimeError() =>
        Expect(Evaluate("def add(a, b):\n    return a / 0", AddTests), CodeOutcome.RuntimeError, "ZeroDivisionError");

    // ---- LeetCode ----

    private const string TwoSumTests = """
        {"import_prefix": "from typing import *\n",
         "test_code": "def check(candidate):\n    assert candidate(nums=[2, 7, 11, 15], target=9) == [0, 1]\n    assert candidate(nums=[3, 2, 4], target=6) == [1, 2]\n",
         "entry_point": "Solution().twoSum"}
        """;

    [Test]
    public void LeetCodeCorrect() => Expect(Evaluate("""
        class Solution:
            def twoSum(self, nums: List[int], target: int) -> List[int]:
                seen = {}
                for i, x in enumerate(nums):
                    if target - x in seen:
                        return [seen[target - x], i]
                    seen[x] = i
        """, TwoSumTests), CodeOutcome.Passed, "passed: 1 test (LeetCode check)");

    [Test]
    public void LeetCodeWrongNamesTheFailingAssert() => Expect(Evaluate("""
        class Solution:
            def twoSum(self, nums: List[int], target: int) -> List[int]:
                return [0, 1]
        """, TwoSumTests), CodeOutcome.WrongAnswer, "check(Solution().twoSum) failed: assert candidate(nums=[3, 2, 4], target=6) == [1, 2]");

    [Test]
    public void LeetCodeWithoutImportPrefixFailsOnTypingNames() => Expect(Evaluate("""
        class Solution:
            def twoSum(self, nums: List[int], target: int) -> List[int]:
                return [0, 1]
        """, """{"test_code": "def check(candidate):\n    assert candidate([1], 1) == [0, 1]\n", "entry_point": "Solution().twoSum"}"""),
        CodeOutcome.RuntimeError, "NameError");

    // ---- assert cases ----

    private const string AssertTests = """{"assert_case": ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(-1, 1) == 0"]}""";

    [Test]
    public void AssertCasesCorrect() =>
        Expect(Evaluate("def add(a, b):\n    return a + b", AssertTests), CodeOutcome.Passed, "passed: all 3 tests (assert cases)");

    [Test]
    public void AssertCasesWrongStopsAtTheFirstFailingAssert() =>
        Expect(Evaluate("def add(a, b):\n    return a + b if a != 2 else 5", AssertTests), CodeOutcome.WrongAnswer,
            "assert_case[1] failed: assert add(2, 2) == 4");

    [Test]
    public void ExitingBeforeTheTestsFinishIsNotAPass() =>
        Expect(Evaluate("import sys\ndef add(a, b):\n    return 0\nsys.exit(0)", AssertTests), CodeOutcome.RuntimeError,
            "exited (code 0) before the assert cases test finished");

    [Test]
    public void PrintingAFakeVerdictIsNotAPass() =>
        Expect(Evaluate("print('{\"status\": \"pass\"}')\nimport os\nos._exit(0)", AddTests), CodeOutcome.RuntimeError, "before the call-based test finished");
}

namespace OR1.Grpo.Rewards.Code;

/// <summary>The four test formats of a <see cref="OR1.Grpo.Data.CodeGroundTruth"/> (docs/RECIPE.md "Rewards").</summary>
public enum CodeTestFormat
{
    /// <summary>{inputs, outputs}: the program reads each input on stdin; its stdout must match the output.</summary>
    StandardIO,

    /// <summary>{inputs, outputs, fn_name}: the function (or Solution method) is called with each input's JSON-decoded arguments.</summary>
    CallBased,

    /// <summary>{import_prefix?, test_code, entry_point}: import_prefix + solution + test_code, then check(entry_point).</summary>
    LeetCode,

    /// <summary>{assert_case}: the solution, then each assert statement in order.</summary>
    AssertCases,
}

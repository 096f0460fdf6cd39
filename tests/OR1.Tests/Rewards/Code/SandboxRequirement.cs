using OR1.Grpo.Data;
using OR1.Grpo.Rewards.Code;

namespace OR1.Tests.Rewards.Code;

/// <summary>Shared setup of the sandbox tests: skip (with what to install) when bubblewrap is missing.</summary>
internal static class SandboxRequirement
{
    /// <summary>Ignores the test when bwrap (or python3, prlimit, setpriv) is not installed; CI installs them in .ci/run.</summary>
    public static void RequireTools(SandboxOptions? options = null)
    {
        string? problem = SandboxTools.Detect(options ?? SandboxOptions.Default).SandboxProblem;
        if (problem is not null)
            Assert.Ignore($"code sandbox tests need bubblewrap: install it with 'apt-get install -y bubblewrap' ({problem})");
    }

    /// <summary>A response whose answer part is one python block.</summary>
    public static string Answer(string code) => $"Here is my solution.\n```python\n{code.Trim('\n')}\n```\n";

    /// <summary>A ground truth from a JSON test object, through the same decoder the data layer uses.</summary>
    public static CodeGroundTruth Truth(string json) => (CodeGroundTruth)GroundTruthDecoder.Decode("code", json);
}

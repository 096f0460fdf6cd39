using System.Diagnostics;
using System.Text.Json.Nodes;
using OR1.Grpo.Data;
using OR1.Grpo.Rewards;
using OR1.Grpo.Rewards.Code;
using OR1.Grpo.Rewards.Math;
using OR1.Runner.Commands;
using static OR1.Tests.Rewards.Code.SandboxRequirement;

namespace OR1.Tests.Rewards.Code;

/// <summary>The code verifier as a whole: pool, router, availability, the unsafe switch, the command line.</summary>
[TestFixture]
public sealed class CodeRewardTests
{
    private const string EchoTests = """{"inputs": ["5\n"], "outputs": ["5\n"]}""";

    [Test]
    public void DefaultsFollowTheRecipe()
    {
        Assert.That(SandboxOptions.Default.TimeLimit, Is.EqualTo(TimeSpan.FromSeconds(6)));
        Assert.That(SandboxOptions.Default.MemoryLimitBytes, Is.EqualTo(1L << 30));
        Assert.That(SandboxOptions.Default.UnsafeNoSandbox, Is.False);
        Assert.That(CodeRewardOptions.Default.MaxConcurrentPrograms, Is.EqualTo(Environment.ProcessorCount));
    }

    [Test]
    public void MissingBubblewrapRefusesWithWhatToInstall()
    {
        var options = new SandboxOptions { BwrapPath = "/nonexistent/bwrap" };
        Assert.That(() => new CodeReward(new CodeRewardOptions { Sandbox = options }),
            Throws.TypeOf<SandboxUnavailableException>().With.Message.Contains("apt-get install bubblewrap"));
        Assert.That(SandboxRunner.Availability(options), Does.Contain("apt-get install bubblewrap"));
    }

    [Test]
    public void MissingPythonRefusesWithWhatToInstall()
    {
        var options = new SandboxOptions { PythonPath = "/nonexistent/python3" };
        Assert.That(() => new SandboxRunner(options), Throws.TypeOf<SandboxUnavailableException>().With.Message.Contains("apt-get install python3"));
        Assert.That(() => new SandboxRunner(options with { UnsafeNoSandbox = true }), Throws.TypeOf<SandboxUnavailableException>());
    }

    [Test]
    public void FindsARealInterpreterNotAShim()
    {
        var tools = SandboxTools.Detect(SandboxOptions.Default);
        Assume.That(tools.Python, Is.Not.Null, "python3 is not installed");
        Assert.That(tools.Python, Does.Not.Contain("/shims/"));
        Assert.That(File.Exists(tools.Python), Is.True);
        if (File.Exists("/usr/bin/python3")) Assert.That(tools.Python, Does.StartWith("/usr/bin/python3"));
    }

    [Test]
    public void APyenvShimIsResolvedToItsInterpreterAndPrefix()
    {
        string shim = Path.Combine(Environment.GetEnvironmentVariable("HOME") ?? "/root", ".pyenv", "shims", "python3");
        Assume.That(File.Exists(shim), Is.True, "no pyenv shim on this machine");
        var tools = SandboxTools.Detect(new SandboxOptions { PythonPath = shim });
        TestContext.Out.WriteLine($"{tools.Python} with folders [{string.Join(", ", tools.PythonFolders)}]; problem: {tools.SandboxProblem}");
        Assert.That(tools.Python, Is.Not.Null.And.Not.Contain("/shims/"));
        Assert.That(tools.PythonFolders, Is.Not.Empty, "the prefix outside /usr is bound read-only");
        if (tools.IsRoot && !tools.Python!.StartsWith("/usr/", StringComparison.Ordinal))
            Assert.That(tools.SandboxProblem, Does.Contain("cannot read").And.Contain("apt-get install python3"),
                "as root the sandbox runs as nobody, which cannot enter a private home");
    }

    [Test]
    public void CommandLineIsolatesTheProgram()
    {
        RequireTools();
        var runner = new SandboxRunner();
        var program = SandboxProgram.Script("print(1)");
        var args = runner.CommandLine(program, "/tmp/or1-sandbox-example");
        TestContext.Out.WriteLine(string.Join(' ', args));
        foreach (var flag in new[] { "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session", "--clearenv", "--cap-drop" })
            Assert.That(args, Does.Contain(flag));
        Assert.That(args.Any(a => a.StartsWith("--as=1073741824", StringComparison.Ordinal)), Is.True);
        Assert.That(args.Any(a => a.StartsWith("--cpu=", StringComparison.Ordinal)), Is.True);
        Assert.That(args.Any(a => a.StartsWith("--nproc=", StringComparison.Ordinal)), Is.True);
        Assert.That(args.Any(a => a.StartsWith("--fsize=", StringComparison.Ordinal)), Is.True);
        Assert.That(args, Has.None.EqualTo("/etc/shadow").And.None.StartsWith("/root").And.None.StartsWith("/home"));
        string root = TestContext.CurrentContext.TestDirectory;
        Assert.That(args.Where(a => a.StartsWith(root, StringComparison.Ordinal)), Is.Empty, "no project folder is bound");
        if (runner.Tools.IsRoot) Assert.That(args[0], Does.EndWith("setpriv"), "root drops to an unprivileged user first");
    }

    [Test]
    public void VerifiersIncludeCodeWhenTheSandboxRuns()
    {
        RequireTools();
        Assert.That(Verifiers.CodeUnavailableReason(), Is.Null);
        var verifiers = Verifiers.Default();
        Assert.That(verifiers.OfType<MathReward>(), Has.Exactly(1).Items);
        Assert.That(verifiers.OfType<CodeReward>(), Has.Exactly(1).Items);
        Assert.That(verifiers.OfType<CodeReward>().Single().Runner.Sandboxed, Is.True);
    }

    [Test]
    public void RouterGradesOnlyTheAnswerPartAndGivesCodeMoreThanTheMathTimeLimit()
    {
        RequireTools();
        var router = new RewardRouter([new MathReward(), new CodeReward()]);
        string response = "<think>\n```python\nprint('wrong')\n```\n</think>\n" +
            Answer("import time\ntime.sleep(1.5)\nprint(input())");
        var result = router.Score(response, Truth(EchoTests), truncated: false);
        Assert.That(result.Score, Is.EqualTo(1.0), result.Reason);
        Assert.That(router.Options.EffectiveTimeLimit, Is.EqualTo(TimeSpan.FromSeconds(1)), "the 1 s math limit does not apply to code");
        Assert.That(router.Score(Answer("print(5)"), Truth(EchoTests), truncated: true).Reason, Does.Contain("truncated"));
    }

    [Test]
    public void ThePoolBoundsConcurrentPrograms()
    {
        RequireTools();
        var reward = new CodeReward(new CodeRewardOptions { MaxConcurrentPrograms = 2 });
        var items = Enumerable.Range(0, 6)
            .Select(i => (Answer("import time\ntime.sleep(0.4)\nprint(input())"), Truth($$"""{"inputs": ["{{i}}"], "outputs": ["{{i}}"]}""")))
            .ToList();
        var clock = Stopwatch.StartNew();
        var verdicts = reward.EvaluateMany(items);
        Assert.That(verdicts.Select(v => v.Outcome), Is.All.EqualTo(CodeOutcome.Passed));
        Assert.That(reward.Pool.Peak, Is.EqualTo(2));
        Assert.That(clock.Elapsed, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(1.2)), "6 programs of 0.4 s, 2 at a time");
    }

    [Test]
    public void ThreadsBeyondThePoolWaitAndAllComplete()
    {
        RequireTools();
        var reward = new CodeReward(new CodeRewardOptions { MaxConcurrentPrograms = 1 });
        var results = new RewardResult[4];
        Parallel.For(0, results.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 },
            i => results[i] = reward.Score(Answer("print(input())"), Truth(EchoTests), CancellationToken.None));
        Assert.That(results.Select(r => r.Score), Is.All.EqualTo(1.0));
        Assert.That(reward.Pool.Peak, Is.EqualTo(1));
    }

    [Test]
    public void CancellationStopsARunningProgram()
    {
        RequireTools();
        var reward = new CodeReward();
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
        var clock = Stopwatch.StartNew();
        var verdict = reward.Evaluate(Answer("while True:\n    pass"), Truth(EchoTests), cancel.Token);
        Assert.That(verdict.Outcome, Is.EqualTo(CodeOutcome.Cancelled));
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(4)));
    }

    [Test]
    public void ANonCodeGroundTruthIsNotScored()
    {
        RequireTools();
        var reward = new CodeReward();
        Assert.That(reward.CanScore(new MathGroundTruth(["1"])), Is.False);
        Assert.That(reward.Score("x", new MathGroundTruth(["1"]), CancellationToken.None).Score, Is.Zero);
    }

    [Test]
    public void UnsafeNoSandboxWarnsOnEveryUse()
    {
        var warnings = new List<string>();
        var options = new CodeRewardOptions { Sandbox = new SandboxOptions { UnsafeNoSandbox = true, Log = w => { lock (warnings) warnings.Add(w); } } };
        CodeReward reward;
        try
        {
            reward = new CodeReward(options);
        }
        catch (SandboxUnavailableException e)
        {
            Assert.Ignore(e.Message);
            return;
        }
        Assert.That(reward.Runner.Sandboxed, Is.False);
        var tests = Truth("""{"inputs": ["1", "2"], "outputs": ["1", "2"]}""");
        Assert.That(reward.Evaluate(Answer("print(input())"), tests).Outcome, Is.EqualTo(CodeOutcome.Passed));
        Assert.That(warnings, Has.Count.EqualTo(2), "one warning per program run");
        Assert.That(warnings, Has.All.Contains("WITHOUT a sandbox"));
    }

    [Test]
    public void SandboxedRunsLogNoWarning()
    {
        RequireTools();
        var warnings = new List<string>();
        var reward = new CodeReward(new CodeRewardOptions { Sandbox = new SandboxOptions { Log = warnings.Add } });
        Assert.That(reward.Evaluate(Answer("print(input())"), Truth(EchoTests)).Outcome, Is.EqualTo(CodeOutcome.Passed));
        Assert.That(warnings, Is.Empty);
    }

    [Test]
    public void ASandboxThatFailsToStartIsASandboxErrorNotTheCodesFault()
    {
        RequireTools();
        if (OperatingSystem.IsWindows()) return;
        string folder = Path.Combine(Path.GetTempPath(), "or1-fake-bwrap-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        try
        {
            string fake = Path.Combine(folder, "bwrap");
            File.WriteAllText(fake, "#!/bin/sh\necho 'bwrap: Creating new namespace failed: simulated' >&2\nexit 1\n");
            File.SetUnixFileMode(folder, (UnixFileMode)0b111_101_101);
            File.SetUnixFileMode(fake, (UnixFileMode)0b111_101_101);
            var reward = new CodeReward(new CodeRewardOptions { Sandbox = new SandboxOptions { BwrapPath = fake } });
            var verdict = reward.Evaluate(Answer("print(input())"), Truth(EchoTests));
            Assert.That(verdict.Outcome, Is.EqualTo(CodeOutcome.SandboxError), verdict.Reason);
            Assert.That(verdict.Reason, Does.StartWith("sandbox error").And.Contain("simulated"));
            Assert.That(SandboxRunner.Availability(new SandboxOptions { BwrapPath = fake }), Does.Contain("simulated").And.Contain("user namespaces"));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Test]
    public void InvalidTestsHaveAReason()
    {
        RequireTools();
        var reward = new CodeReward();
        var verdict = reward.Evaluate(Answer("print(1)"), new CodeGroundTruth(new JsonObject { ["inputs"] = new JsonArray(), ["outputs"] = new JsonArray() }));
        Assert.That(verdict.Outcome, Is.EqualTo(CodeOutcome.InvalidTests));
        Assert.That(verdict.Reason, Does.StartWith("invalid tests"));
    }

    [Test]
    public void TheSandboxSeesAFreshScratchFolderAndACleanEnvironment()
    {
        RequireTools();
        var runner = new SandboxRunner();
        string code = """
            import os, sys
            print(os.getcwd())
            print(os.environ.get("HOME"))
            print(sorted(k for k in os.environ if k.startswith(("DOTNET", "NUNIT", "SSH", "AWS"))))
            open("scratch.txt", "w").write("x")
            print(sorted(os.listdir(".")))
            print(os.getuid(), os.getpid())
            """;
        var first = runner.Run(SandboxProgram.Script(code));
        var second = runner.Run(SandboxProgram.Script(code));
        TestContext.Out.WriteLine(first.Stdout + first.Stderr);
        Assert.That(first.Succeeded, Is.True, first.Stderr);
        var lines = first.Stdout.Split('\n');
        Assert.That(lines[0], Is.EqualTo("/sandbox"));
        Assert.That(lines[1], Is.EqualTo("/sandbox"));
        Assert.That(lines[2], Is.EqualTo("[]"));
        Assert.That(lines[3], Is.EqualTo("['main.py', 'scratch.txt', 'tmp']"));
        Assert.That(second.Stdout, Is.EqualTo(first.Stdout), "each program starts from an empty scratch folder");
    }

    [Test]
    public void RewardCommandScoresCodeRowsInTheSandbox()
    {
        RequireTools();
        string folder = Path.Combine(Path.GetTempPath(), "or1-code-cli-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        try
        {
            string input = Path.Combine(folder, "responses.jsonl"), output = Path.Combine(folder, "scored.jsonl");
            var truth = System.Text.Json.JsonSerializer.Serialize("""{"inputs": ["2 3\n"], "outputs": ["5\n"]}""");
            string Row(string code) => new JsonObject
            {
                ["response"] = "<think>adding</think>\n```python\n" + code + "\n```",
                ["ground_truth"] = JsonNode.Parse(truth),
                ["ability"] = "code",
            }.ToJsonString();
            File.WriteAllLines(input, [Row("a, b = map(int, input().split())\nprint(a + b)"), Row("print(6)"), Row("while True: pass")]);
            Assert.That(RewardCommand.Run(input, output), Is.Zero);
            var scored = File.ReadAllLines(output).Select(l => JsonNode.Parse(l)!).ToArray();
            Assert.That(scored.Select(s => (double)s["reward"]!), Is.EqualTo(new[] { 1.0, 0.0, 0.0 }));
            Assert.That((string)scored[1]["reason"]!, Does.Contain("wrong answer"));
            Assert.That((string)scored[2]["reason"]!, Does.Contain("time limit"));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}

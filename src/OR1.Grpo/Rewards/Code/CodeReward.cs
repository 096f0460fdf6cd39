using System.Text.Json;
using OR1.Grpo.Data;

namespace OR1.Grpo.Rewards.Code;

/// <summary>
/// The code verifier (docs/RECIPE.md "Rewards"): takes the last ```python block of the answer, runs the tests of
/// the <see cref="CodeGroundTruth"/> in order, each program in a fresh sandbox (<see cref="SandboxRunner"/>),
/// and scores 1 only when every test passes, stopping at the first failure. Programs from all callers share
/// one <see cref="ProgramPool"/>. Never throws for model output; every verdict has a reason.
/// </summary>
public sealed class CodeReward : IRewardFunction
{
    private const string NoCodeReason = "no code: no ```python block in the answer";

    /// <summary>Builds the sandbox runner and the pool.</summary>
    /// <exception cref="SandboxUnavailableException">bubblewrap or python3 is missing (the message says what to install).</exception>
    public CodeReward(CodeRewardOptions? options = null)
    {
        Options = options ?? CodeRewardOptions.Default;
        Runner = new SandboxRunner(Options.Sandbox);
        Pool = new ProgramPool(Options.MaxConcurrentPrograms);
    }

    /// <summary>The settings in force.</summary>
    public CodeRewardOptions Options { get; }

    /// <summary>Runs each program.</summary>
    public SandboxRunner Runner { get; }

    /// <summary>Bounds the programs running at once.</summary>
    public ProgramPool Pool { get; }

    /// <inheritdoc />
    public bool CanScore(GroundTruth truth) => truth is CodeGroundTruth;

    /// <summary>
    /// No router-wide limit: this verifier bounds every program itself (wall clock per test), and a response
    /// waiting for a pool slot is not running out of time.
    /// </summary>
    public TimeSpan? TimeLimit(GroundTruth truth) => Timeout.InfiniteTimeSpan;

    /// <inheritdoc />
    public RewardResult Score(string answer, GroundTruth truth, CancellationToken cancellation) =>
        truth is CodeGroundTruth code
            ? Evaluate(answer, code, cancellation).ToReward()
            : RewardResult.Wrong($"not a code ground truth: {truth}");

    /// <summary>Scores many answers at once, as many programs in flight as the pool allows.</summary>
    public IReadOnlyList<CodeVerdict> EvaluateMany(IReadOnlyList<(string Answer, CodeGroundTruth Truth)> items, CancellationToken cancellation = default)
    {
        var verdicts = new CodeVerdict[items.Count];
        int next = -1;
        var workers = Enumerable.Range(0, System.Math.Min(Pool.Size, items.Count)).Select(_ => new Thread(() =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < items.Count) verdicts[i] = Evaluate(items[i].Answer, items[i].Truth, cancellation);
        }) { IsBackground = true, Name = "code reward" }).ToList();
        foreach (var w in workers) w.Start();
        foreach (var w in workers) w.Join();
        return verdicts;
    }

    /// <summary>The verdict on one answer (the text after &lt;/think&gt;).</summary>
    public CodeVerdict Evaluate(string answer, CodeGroundTruth truth, CancellationToken cancellation = default)
    {
        CodeTestSuite suite;
        try
        {
            suite = CodeTestSuite.From(truth);
        }
        catch (FormatException e)
        {
            return new CodeVerdict(CodeOutcome.InvalidTests, $"invalid tests: {e.Message}");
        }
        string? code = CodeExtractor.ExtractPython(answer);
        if (code is null || code.Trim().Length == 0) return new CodeVerdict(CodeOutcome.NoCode, NoCodeReason, 0, suite.Count);
        if (code.Length > Options.MaxCodeChars)
            return new CodeVerdict(CodeOutcome.NoCode, $"no code: the python block has {code.Length} characters, over the limit of {Options.MaxCodeChars}", 0, suite.Count);

        try
        {
            for (int i = 0; i < suite.ProgramCount; i++)
            {
                if (cancellation.IsCancellationRequested) return new CodeVerdict(CodeOutcome.Cancelled, "cancelled", i, suite.Count);
                var run = suite.Program(i, code, Options.Sandbox);
                var result = Pool.Run(() => Runner.Run(run.Program, cancellation), cancellation);
                string where = suite.ProgramCount == 1 ? "" : $" on test {i + 1}/{suite.Count}";
                var failure = Judge(suite, run, result, where);
                if (failure is not null) return failure with { TestsPassed = suite.ProgramCount == 1 ? 0 : i, TestCount = suite.Count };
            }
        }
        catch (OperationCanceledException)
        {
            return new CodeVerdict(CodeOutcome.Cancelled, "cancelled", 0, suite.Count);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new CodeVerdict(CodeOutcome.SandboxError, $"sandbox error: {e.GetType().Name}: {e.Message}", 0, suite.Count);
        }
        string tests = suite.Count == 1 ? "1 test" : $"all {suite.Count} tests";
        return new CodeVerdict(CodeOutcome.Passed, $"passed: {tests} ({suite.FormatName})", suite.Count, suite.Count);
    }

    /// <summary>Null when the test passed, else the verdict.</summary>
    private CodeVerdict? Judge(CodeTestSuite suite, TestRun run, SandboxResult result, string where)
    {
        switch (result.Status)
        {
            case SandboxStatus.TimeLimit:
                return new CodeVerdict(CodeOutcome.TimeLimit, $"time limit{where}: {result.Detail}");
            case SandboxStatus.OutputLimit:
                return new CodeVerdict(CodeOutcome.OutputLimit, $"output limit{where}: {result.Detail}");
            case SandboxStatus.SandboxError:
                return new CodeVerdict(CodeOutcome.SandboxError, $"sandbox error{where}: {result.Detail}");
            case SandboxStatus.Cancelled:
                return new CodeVerdict(CodeOutcome.Cancelled, "cancelled");
        }
        if (result.ExitCode != 0)
        {
            string stderr = SandboxRunner.Tail(result.Stderr, 3);
            if (IsMemoryFailure(result.Stderr))
                return new CodeVerdict(CodeOutcome.MemoryLimit,
                    $"memory limit{where}: {stderr} (address space limit {Options.Sandbox.MemoryLimitBytes / (1 << 20)} MB)");
            if (result.Signal is 24)
                return new CodeVerdict(CodeOutcome.TimeLimit, $"time limit{where}: CPU time limit exceeded (SIGXCPU)");
            string how = result.Signal is { } signal ? $"killed by signal {signal}" : $"exit code {result.ExitCode}";
            return new CodeVerdict(CodeOutcome.RuntimeError, $"runtime error{where}: {how}" + (stderr.Length > 0 ? $": {stderr}" : ""));
        }

        if (run.ExpectedStdout is { } expected)
        {
            return OutputComparer.Matches(result.Stdout, expected, out string difference)
                ? null
                : new CodeVerdict(CodeOutcome.WrongAnswer, $"wrong answer{where}: {difference}");
        }

        var verdict = HarnessVerdict(result.Stdout, run.Nonce!);
        if (verdict is null)
        {
            string stderr = SandboxRunner.Tail(result.Stderr, 3);
            return new CodeVerdict(CodeOutcome.RuntimeError,
                $"runtime error{where}: the program exited (code 0) before the {suite.FormatName} test finished" + (stderr.Length > 0 ? $": {stderr}" : ""));
        }
        return verdict.Value.Status switch
        {
            "pass" => null,
            "fail" => new CodeVerdict(CodeOutcome.WrongAnswer, $"wrong answer{where}: {verdict.Value.Detail}"),
            _ => new CodeVerdict(CodeOutcome.RuntimeError, $"runtime error{where}: {verdict.Value.Detail}"),
        };
    }

    /// <summary>The last line tagged with the nonce: {"status": pass|fail|missing, "detail": ...}.</summary>
    private static (string Status, string Detail)? HarnessVerdict(string stdout, string nonce)
    {
        string prefix = nonce + " ";
        foreach (var line in stdout.Split('\n').Reverse())
        {
            if (!line.StartsWith(prefix, StringComparison.Ordinal)) continue;
            try
            {
                using var doc = JsonDocument.Parse(line[prefix.Length..]);
                string status = doc.RootElement.GetProperty("status").GetString() ?? "";
                string detail = doc.RootElement.TryGetProperty("detail", out var d) ? d.GetString() ?? "" : "";
                return (status, detail.Replace('\n', ' '));
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                return null;
            }
        }
        return null;
    }

    private static bool IsMemoryFailure(string stderr)
    {
        string tail = SandboxRunner.Tail(stderr, 4);
        return tail.Contains("MemoryError", StringComparison.Ordinal)
            || tail.Contains("Cannot allocate memory", StringComparison.OrdinalIgnoreCase)
            || tail.Contains("std::bad_alloc", StringComparison.Ordinal)
            || tail.Contains("out of memory", StringComparison.OrdinalIgnoreCase);
    }
}

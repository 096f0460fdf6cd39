using System.Diagnostics;
using System.Globalization;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using OR1.Grpo.Data;
using OR1.Grpo.Rewards.Code;

namespace OR1.Bench.Rewards;

/// <summary>
/// The code sandbox against a bare <c>python3</c> start, in the same run, on 2 cores (the process is pinned
/// to 2 cores when the machine has more; children inherit it):
/// <list type="bullet">
/// <item>"single": one small stdin program at a time; the overhead column is the sandbox's extra latency per
/// program (setpriv, bwrap namespaces and mounts, prlimit, host folder).</item>
/// <item>"batch": 256 small correct programs (one stdin test each) on 2 workers: bare python3 started by 2
/// threads, against <see cref="CodeReward.EvaluateMany"/> with a pool of 2 (extraction, sandbox, comparison);
/// programs/s is the throughput, the overhead column the extra worker time per program.</item>
/// </list>
/// </summary>
[Config(typeof(Config))]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class SandboxBenchmarks : IProgramThroughputBenchmark
{
    /// <summary>The throughput columns, and one invocation per iteration (an invocation runs up to 256 processes).</summary>
    public sealed class Config : ManualConfig
    {
        public Config()
        {
            AddColumn(new ProgramsPerSecondColumn(), new OverheadPerProgramColumn());
            AddJob(Job.Default.WithInvocationCount(1).WithUnrollFactor(1).WithId("Sandbox"));
        }
    }

    public const int BatchSize = 256, Cores = 2, SingleRuns = 16;

    private const string Program = "a, b = map(int, input().split())\nprint(a + b)\n";

    private CodeReward _reward = null!;
    private string _python = null!;
    private string _folder = null!;
    private (string Answer, CodeGroundTruth Truth)[] _batch = [];
    private (string Stdin, string Expected)[] _cases = [];

    [GlobalSetup]
    public void Setup()
    {
        if (Environment.ProcessorCount > Cores && (OperatingSystem.IsLinux() || OperatingSystem.IsWindows()))
            Process.GetCurrentProcess().ProcessorAffinity = (IntPtr)((1 << Cores) - 1);
        _reward = new CodeReward(new CodeRewardOptions { MaxConcurrentPrograms = Cores });
        _python = _reward.Runner.Tools.Python!;
        _folder = Path.Combine(Path.GetTempPath(), "or1-bench-bare-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_folder);
        File.WriteAllText(Path.Combine(_folder, "main.py"), Program);
        _cases = Enumerable.Range(0, BatchSize)
            .Select(i => ($"{i} {i * 7}\n", (i * 8).ToString(CultureInfo.InvariantCulture))).ToArray();
        _batch = _cases.Select(c => ($"```python\n{Program}```",
            (CodeGroundTruth)GroundTruthDecoder.Decode("code", $$"""{"inputs": [{{Json(c.Stdin)}}], "outputs": [{{Json(c.Expected)}}]}"""))).ToArray();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_folder is not null && Directory.Exists(_folder)) Directory.Delete(_folder, recursive: true);
    }

    /// <summary>One bare python3 start per program (the baseline of "single").</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = SingleRuns), BenchmarkCategory("single")]
    public void BarePython()
    {
        for (int i = 0; i < SingleRuns; i++) RunBare(_cases[i]);
    }

    /// <summary>One sandboxed program at a time.</summary>
    [Benchmark(OperationsPerInvoke = SingleRuns), BenchmarkCategory("single")]
    public void Sandboxed()
    {
        for (int i = 0; i < SingleRuns; i++)
        {
            var result = _reward.Runner.Run(SandboxProgram.Script(Program, _cases[i].Stdin));
            if (!result.Succeeded || result.Stdout.Trim() != _cases[i].Expected) throw new InvalidOperationException($"sandboxed run failed: {result.Status} {result.Stderr}");
        }
    }

    /// <summary>256 bare python3 starts on 2 threads (the baseline of "batch").</summary>
    [Benchmark(Baseline = true), BenchmarkCategory("batch")]
    public void BatchBarePython()
    {
        int next = -1;
        var workers = Enumerable.Range(0, Cores).Select(_ => new Thread(() =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < _cases.Length) RunBare(_cases[i]);
        })).ToList();
        workers.ForEach(w => w.Start());
        workers.ForEach(w => w.Join());
    }

    /// <summary>256 responses scored by the code reward with a pool of 2.</summary>
    [Benchmark, BenchmarkCategory("batch")]
    public void BatchCodeReward()
    {
        var verdicts = _reward.EvaluateMany(_batch);
        var failed = verdicts.FirstOrDefault(v => !v.Passed);
        if (failed is not null) throw new InvalidOperationException($"a batch program failed: {failed.Reason}");
    }

    public int Programs(string method) => method.StartsWith("Batch", StringComparison.Ordinal) ? BatchSize : 1;

    public int Workers(string method) => method.StartsWith("Batch", StringComparison.Ordinal) ? Cores : 1;

    private void RunBare((string Stdin, string Expected) test)
    {
        var info = new ProcessStartInfo(_python)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = _folder,
        };
        info.ArgumentList.Add("-B");
        info.ArgumentList.Add("main.py");
        using var process = Process.Start(info)!;
        process.StandardInput.Write(test.Stdin);
        process.StandardInput.Close();
        var stderr = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        stderr.Wait();
        if (process.ExitCode != 0 || output.Trim() != test.Expected) throw new InvalidOperationException($"bare run failed: {stderr.Result}");
    }

    private static string Json(string s) => System.Text.Json.JsonSerializer.Serialize(s);
}

using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace OR1.Bench;

/// <summary>
/// Entry point: BenchmarkDotNet's switcher (use --filter '*Rms*' to pick), plus --quick for a short
/// smoke job and --backends cpu,cuda / --shapes 7b,odd to narrow the kernel families' cases
/// (<see cref="BenchSelection"/>). Results go to BenchmarkDotNet.Artifacts as markdown (GitHub), CSV and
/// HTML: the default configuration's exporters.
/// </summary>
public static class Program
{
    public static void Main(string[] args)
    {
        bool quick = args.Contains("--quick");
        var rest = BenchSelection.Parse(args.Where(a => a != "--quick").ToArray());
        var job = quick
            // Short iterations and no overhead run: every op here takes microseconds at least.
            ? Job.Default.WithWarmupCount(1).WithIterationCount(3).WithLaunchCount(1)
                .WithIterationTime(Perfolizer.Horology.TimeInterval.FromMilliseconds(100)).WithEvaluateOverhead(false).WithId("Quick")
            : Job.Default.WithWarmupCount(3).WithIterationCount(10).WithLaunchCount(1).WithId("Default");
        // In-process: no generated project to build (which would inherit this repository's build settings),
        // and the kernels' native libraries are found next to the benchmark assembly as in production.
        job = job.WithToolchain(InProcessEmitToolchain.Instance);
        var config = DefaultConfig.Instance
            .AddJob(job.AsDefault())
            .WithOptions(ConfigOptions.JoinSummary | ConfigOptions.DisableLogFile);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(rest, config);
    }
}

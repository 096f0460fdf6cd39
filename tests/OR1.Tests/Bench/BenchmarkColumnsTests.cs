using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using OR1.Bench;
using OR1.Bench.Kernels;

namespace OR1.Tests.Bench;

/// <summary>
/// BenchmarkDotNet itself, in-process with its one-iteration Dry job, on two families at the odd shape
/// on the Cpu backend: the custom columns must hold numbers derived from the measured time (GB/s for
/// RMSNorm, GFLOP/s for GEMM) and a % of the measured CPU peak.
/// </summary>
public class BenchmarkColumnsTests
{
    [Test]
    public void DryRunFillsThroughputAndPeakColumns()
    {
        string artifacts = Path.Combine(Path.GetTempPath(), $"or1-bdn-{Guid.NewGuid():N}");
        try
        {
            BenchSelection.BackendFilter = ["cpu"];
            BenchSelection.ShapeFilter = ["odd"];
            var config = ManualConfig.CreateEmpty()
                .AddJob(Job.Dry.WithToolchain(InProcessEmitToolchain.Instance))
                .AddColumnProvider(DefaultColumnProviders.Instance)
                .AddLogger(NullLogger.Instance)
                .WithArtifactsPath(artifacts);
            var summaries = BenchmarkRunner.Run([typeof(RmsNormBenchmarks), typeof(GemmBenchmarks)], config);
            var ic = CultureInfo.InvariantCulture;
            foreach (var summary in summaries)
            {
                Assert.That(summary.HasCriticalValidationErrors, Is.False, string.Join("; ", summary.ValidationErrors.Select(e => e.Message)));
                Assert.That(summary.BenchmarksCases, Is.Not.Empty);
                foreach (var benchmarkCase in summary.BenchmarksCases)
                {
                    string name = benchmarkCase.DisplayInfo;
                    Assert.That(summary[benchmarkCase]?.Success, Is.True, name);
                    Assert.That(benchmarkCase.Parameters.DisplayInfo, Does.Contain("cpu/odd"), name);
                    bool memoryBound = benchmarkCase.Descriptor.Type == typeof(RmsNormBenchmarks);
                    string gbps = new BandwidthColumn().GetValue(summary, benchmarkCase);
                    string gflops = new GflopsColumn().GetValue(summary, benchmarkCase);
                    string percent = new PercentOfPeakColumn().GetValue(summary, benchmarkCase);
                    string basis = new PeakBasisColumn().GetValue(summary, benchmarkCase);
                    string rate = memoryBound ? gbps : gflops;
                    TestContext.Out.WriteLine($"{name}: {(memoryBound ? gbps + " GB/s" : gflops + " GFLOP/s")}, {percent} of {basis}");
                    Assert.That(double.Parse(rate, ic), Is.GreaterThan(0), $"{name}: {rate}");
                    Assert.That(memoryBound ? gflops : gbps, Is.EqualTo("-"), name);
                    Assert.That(percent, Does.EndWith(" %"), name);
                    Assert.That(double.Parse(percent[..^2], ic), Is.GreaterThan(0), name);
                    Assert.That(basis, Does.StartWith(memoryBound ? "measured copy" : "measured FMA"), name);
                }
            }
            Assert.That(summaries.Sum(s => s.BenchmarksCases.Length), Is.EqualTo(5), "RMSNorm forward/backward and GEMM's three products at cpu/odd");
        }
        finally
        {
            BenchSelection.BackendFilter = null;
            BenchSelection.ShapeFilter = null;
            if (Directory.Exists(artifacts)) Directory.Delete(artifacts, recursive: true);
        }
    }
}

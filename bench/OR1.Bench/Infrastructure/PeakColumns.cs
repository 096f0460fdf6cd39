using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace OR1.Bench;

/// <summary>
/// How close a case came to its hardware's peak (<see cref="HardwarePeak"/>): ops that report flops are
/// compared with the floating-point peak, the memory-bound ones (bytes only) with the bandwidth peak.
/// </summary>
internal static class PeakFraction
{
    /// <summary>(fraction of peak, what the peak is), or null when the case has no peak or no result.</summary>
    public static (double Fraction, string Basis)? Of(Summary summary, BenchmarkCase benchmarkCase)
    {
        var instance = ThroughputCase.Instance(benchmarkCase);
        var seconds = ThroughputCase.MeanSeconds(summary, benchmarkCase);
        if (instance is not IPeakReferenced referenced || seconds is null) return null;
        var peak = HardwarePeak.For(referenced.BackendName);
        if (peak is null) return null;
        string method = benchmarkCase.Descriptor.WorkloadMethod.Name;
        double flops = instance.Flops(method);
        if (flops > 0) return (flops / seconds.Value / peak.FlopsPerSecond, peak.FlopsBasis);
        long bytes = instance.BytesMoved(method);
        return bytes > 0 ? (bytes / seconds.Value / peak.BytesPerSecond, peak.BandwidthBasis) : null;
    }
}

/// <summary>Percent of the peak of the case's hardware.</summary>
public sealed class PercentOfPeakColumn() : CustomColumn("% peak", "Throughput over the hardware peak: FLOP/s over the FMA or tensor-core peak when the op counts flops, else GB/s over the copy or HBM bandwidth", 3)
{
    protected override string Value(Summary summary, BenchmarkCase benchmarkCase) =>
        PeakFraction.Of(summary, benchmarkCase) is { } p ? (100 * p.Fraction).ToString("F1", CultureInfo.InvariantCulture) + " %" : "-";
}

/// <summary>Which peak <see cref="PercentOfPeakColumn"/> divides by.</summary>
public sealed class PeakBasisColumn() : CustomColumn("peak", "The peak that % peak divides by: measured on this CPU, or a GPU's stated figure", 4)
{
    protected override string Value(Summary summary, BenchmarkCase benchmarkCase) =>
        PeakFraction.Of(summary, benchmarkCase) is { } p ? p.Basis : "-";
}

/// <summary>The kernel families' columns: GB/s, GFLOP/s, % of peak and the peak used.</summary>
public sealed class KernelBenchmarkConfig : BenchmarkDotNet.Configs.ManualConfig
{
    public KernelBenchmarkConfig() =>
        AddColumn(new BandwidthColumn(), new GflopsColumn(), new PercentOfPeakColumn(), new PeakBasisColumn());
}

using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace OR1.Bench;

/// <summary>
/// Benchmarks that know how much memory traffic or arithmetic one operation does, so that the summary
/// can print GB/s, GFLOP/s and a fraction of the hardware's peak.
/// </summary>
public interface IThroughputBenchmark
{
    /// <summary>Bytes read plus bytes written by one invocation of <paramref name="method"/> with the current parameters.</summary>
    long BytesMoved(string method);

    /// <summary>Floating-point operations of one invocation (0 for memory-bound ops).</summary>
    double Flops(string method);
}

/// <summary>Shared plumbing: create the benchmark instance for a case with its parameters applied.</summary>
internal static class ThroughputCase
{
    public static IThroughputBenchmark? Instance(BenchmarkCase benchmarkCase)
    {
        var type = benchmarkCase.Descriptor.Type;
        if (!typeof(IThroughputBenchmark).IsAssignableFrom(type)) return null;
        var instance = (IThroughputBenchmark)Activator.CreateInstance(type)!;
        foreach (var parameter in benchmarkCase.Parameters.Items)
        {
            var member = (System.Reflection.MemberInfo?)type.GetProperty(parameter.Name) ?? type.GetField(parameter.Name);
            switch (member)
            {
                case System.Reflection.PropertyInfo p: p.SetValue(instance, parameter.Value); break;
                case System.Reflection.FieldInfo f: f.SetValue(instance, parameter.Value); break;
            }
        }
        return instance;
    }

    public static double? MeanSeconds(Summary summary, BenchmarkCase benchmarkCase)
    {
        var report = summary[benchmarkCase];
        var stats = report?.ResultStatistics;
        return stats is null ? null : stats.Mean * 1e-9;
    }
}

/// <summary>GB/s = (bytes read + bytes written) / mean time.</summary>
public sealed class BandwidthColumn() : CustomColumn("GB/s", "Memory traffic (bytes read + written) per second, 1e9 bytes", 0)
{
    protected override string Value(Summary summary, BenchmarkCase benchmarkCase)
    {
        double? gbps = Bandwidth(summary, benchmarkCase);
        return gbps is null ? "-" : gbps.Value.ToString("F2", System.Globalization.CultureInfo.InvariantCulture);
    }

    internal static double? Bandwidth(Summary summary, BenchmarkCase benchmarkCase)
    {
        var instance = ThroughputCase.Instance(benchmarkCase);
        var seconds = ThroughputCase.MeanSeconds(summary, benchmarkCase);
        if (instance is null || seconds is null) return null;
        long bytes = instance.BytesMoved(benchmarkCase.Descriptor.WorkloadMethod.Name);
        return bytes <= 0 ? null : bytes / seconds.Value / 1e9;
    }
}

/// <summary>GFLOP/s = floating-point operations / mean time.</summary>
public sealed class GflopsColumn() : CustomColumn("GFLOP/s", "Floating-point operations per second, 1e9", 2)
{
    protected override string Value(Summary summary, BenchmarkCase benchmarkCase)
    {
        var instance = ThroughputCase.Instance(benchmarkCase);
        var seconds = ThroughputCase.MeanSeconds(summary, benchmarkCase);
        if (instance is null || seconds is null) return "-";
        double flops = instance.Flops(benchmarkCase.Descriptor.WorkloadMethod.Name);
        return flops <= 0 ? "-" : (flops / seconds.Value / 1e9).ToString("F1", System.Globalization.CultureInfo.InvariantCulture);
    }
}

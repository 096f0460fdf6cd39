using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace OR1.Bench;

/// <summary>Benchmarks that run a known number of programs per reported operation, on a known number of workers.</summary>
public interface IProgramThroughputBenchmark
{
    /// <summary>Programs run by one operation of <paramref name="method"/> (after OperationsPerInvoke).</summary>
    int Programs(string method);

    /// <summary>Programs of <paramref name="method"/> running at once.</summary>
    int Workers(string method);
}

/// <summary>programs/s = programs per operation / mean time.</summary>
public sealed class ProgramsPerSecondColumn() : CustomColumn("programs/s", "Programs run per second (all workers together)", 0)
{
    protected override string Value(Summary summary, BenchmarkCase benchmarkCase)
    {
        double? rate = Rate(summary, benchmarkCase);
        return rate is null ? "-" : rate.Value.ToString("F1", System.Globalization.CultureInfo.InvariantCulture);
    }

    internal static IProgramThroughputBenchmark? Instance(BenchmarkCase benchmarkCase) =>
        typeof(IProgramThroughputBenchmark).IsAssignableFrom(benchmarkCase.Descriptor.Type)
            ? (IProgramThroughputBenchmark)Activator.CreateInstance(benchmarkCase.Descriptor.Type)!
            : null;

    internal static double? Rate(Summary summary, BenchmarkCase benchmarkCase)
    {
        var instance = Instance(benchmarkCase);
        var seconds = ThroughputCase.MeanSeconds(summary, benchmarkCase);
        return instance is null || seconds is null ? null : instance.Programs(benchmarkCase.Descriptor.WorkloadMethod.Name) / seconds.Value;
    }
}

/// <summary>
/// Worker time per program over the baseline of the same category (bare python3, measured in the same run):
/// (mean - baseline mean) * workers / programs, in milliseconds.
/// </summary>
public sealed class OverheadPerProgramColumn() : CustomColumn("overhead/program", "Worker milliseconds per program over the baseline (bare python3 start) of the same category", 1)
{
    protected override string Value(Summary summary, BenchmarkCase benchmarkCase)
    {
        var baseline = summary.BenchmarksCases.FirstOrDefault(c =>
            c.Descriptor.Baseline && c.Descriptor.Type == benchmarkCase.Descriptor.Type &&
            c.Descriptor.Categories.SequenceEqual(benchmarkCase.Descriptor.Categories));
        var instance = ProgramsPerSecondColumn.Instance(benchmarkCase);
        if (baseline is null || instance is null) return "-";
        double? mine = ThroughputCase.MeanSeconds(summary, benchmarkCase), reference = ThroughputCase.MeanSeconds(summary, baseline);
        if (mine is null || reference is null) return "-";
        string method = benchmarkCase.Descriptor.WorkloadMethod.Name, baseMethod = baseline.Descriptor.WorkloadMethod.Name;
        double perProgram = mine.Value * instance.Workers(method) / instance.Programs(method);
        double basePerProgram = reference.Value * instance.Workers(baseMethod) / instance.Programs(baseMethod);
        return ((perProgram - basePerProgram) * 1e3).ToString("F1", System.Globalization.CultureInfo.InvariantCulture) + " ms";
    }
}

/// <summary>Adds programs/s and the overhead over the baseline: [Config(typeof(ProgramThroughputConfig))].</summary>
public sealed class ProgramThroughputConfig : BenchmarkDotNet.Configs.ManualConfig
{
    public ProgramThroughputConfig() => AddColumn(new ProgramsPerSecondColumn(), new OverheadPerProgramColumn());
}

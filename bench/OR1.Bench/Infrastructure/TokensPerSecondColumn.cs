using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace OR1.Bench;

/// <summary>Benchmarks that process a known number of tokens per invocation.</summary>
public interface ITokenThroughputBenchmark
{
    /// <summary>Tokens processed (trained on, or generated) by one invocation of <paramref name="method"/>.</summary>
    long Tokens(string method);
}

/// <summary>tokens/s = tokens per invocation / mean time.</summary>
public sealed class TokensPerSecondColumn() : CustomColumn("tokens/s", "Tokens processed per second", 0)
{
    protected override string Value(Summary summary, BenchmarkCase benchmarkCase)
    {
        var type = benchmarkCase.Descriptor.Type;
        if (!typeof(ITokenThroughputBenchmark).IsAssignableFrom(type)) return "-";
        var instance = (ITokenThroughputBenchmark)Activator.CreateInstance(type)!;
        var seconds = ThroughputCase.MeanSeconds(summary, benchmarkCase);
        if (seconds is null) return "-";
        long tokens = instance.Tokens(benchmarkCase.Descriptor.WorkloadMethod.Name);
        return (tokens / seconds.Value).ToString("F0", System.Globalization.CultureInfo.InvariantCulture);
    }
}

/// <summary>Adds the tokens/s column: [Config(typeof(TokenThroughputConfig))].</summary>
public sealed class TokenThroughputConfig : BenchmarkDotNet.Configs.ManualConfig
{
    public TokenThroughputConfig() => AddColumn(new TokensPerSecondColumn());
}

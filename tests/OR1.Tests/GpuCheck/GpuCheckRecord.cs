using System.Text.Json;
using System.Text.Json.Serialization;

namespace OR1.Tests.GpuCheck;

/// <summary>
/// One figure of the GPU check, in the schema both sides write (ours from .NET, PyTorch's from bench/compare/gpu_*.py)
/// and bench/compare/gpu_report.py pairs by <see cref="Key"/>: the same key on both sides is the same work at the same
/// shape and dtype. Times are per call (median of the timed repeats); rates are derived from the counting stated in
/// <see cref="Counting"/>. Unused figures stay null.
/// </summary>
public sealed record GpuCheckRecord
{
    public required string Key { get; init; }
    public required string Side { get; init; }
    public required string Name { get; init; }
    public string Shape { get; init; } = "";
    public string Dtype { get; init; } = "";
    public double? Ms { get; init; }
    public double? Gbps { get; init; }
    public double? Tflops { get; init; }
    public double? TokensPerS { get; init; }
    public long? PeakBytes { get; init; }
    public string? Counting { get; init; }
    public string? Implementation { get; init; }
    public Dictionary<string, long>? Counters { get; init; }
    /// <summary>Generation only: mean and largest |engine log-prob - trainer log-prob| over the tokens compared.</summary>
    public double? LogprobMismatchMean { get; init; }
    public double? LogprobMismatchMax { get; init; }
    public long? LogprobMismatchTokens { get; init; }
    public string? Skipped { get; init; }
    public string? Error { get; init; }

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        WriteIndented = false,
    };

    /// <summary>Writes the records as one JSON array (what gpu_report.py reads).</summary>
    public static void Save(string path, IEnumerable<GpuCheckRecord> records) =>
        File.WriteAllText(path, JsonSerializer.Serialize(records.ToArray(), Json));
}

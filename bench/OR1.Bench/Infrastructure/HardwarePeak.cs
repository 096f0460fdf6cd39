using System.Collections.Concurrent;
using System.Globalization;
using OR1.Native;

namespace OR1.Bench;

/// <summary>Benchmarks whose cases run on a named backend, so a column can look up that hardware's peak.</summary>
public interface IPeakReferenced
{
    /// <summary>The <see cref="Backends"/> name of the case's backend.</summary>
    string BackendName { get; }
}

/// <summary>
/// What "100 %" means for a backend: a memory bandwidth and a floating-point rate, and where they come
/// from (measured here, or a vendor's stated figure).
/// </summary>
public sealed record HardwarePeak(double BytesPerSecond, double FlopsPerSecond, string BandwidthBasis, string FlopsBasis)
{
    private static readonly ConcurrentDictionary<string, HardwarePeak?> s_byBackend = new();

    /// <summary>
    /// Stated peaks of the GPUs we expect (dense BF16 tensor-core rate, HBM bandwidth; NVIDIA's data sheets,
    /// SXM parts). Matched against the device name in the backend's description.
    /// </summary>
    private static readonly (string Name, double BytesPerSecond, double FlopsPerSecond)[] s_statedGpus =
    [
        ("H200", 4.8e12, 989e12),
        ("H100", 3.35e12, 989e12),
        ("A100", 2.039e12, 312e12),
    ];

    /// <summary>
    /// The peak of <paramref name="backend"/>: on the CPU (and the simulators, which run on it) the copy
    /// bandwidth and FMA rate measured in this process; on a GPU the stated figures of a known device, or
    /// OR1_PEAK_GBPS and OR1_PEAK_TFLOPS when set; null when neither is known.
    /// </summary>
    public static HardwarePeak? For(string backend) => s_byBackend.GetOrAdd(backend, Resolve);

    private static HardwarePeak? Resolve(string backend)
    {
        if (backend is "cpu" or "emu" or "ilgpu-cpu") return CpuPeakMeter.Measured;
        if (Stated(Environment.GetEnvironmentVariable("OR1_PEAK_GBPS"), Environment.GetEnvironmentVariable("OR1_PEAK_TFLOPS")) is { } overridden)
            return overridden;
        return BenchSelection.Description(backend) is { } description ? StatedFor(description) : null;
    }

    /// <summary>The stated peaks of the known GPU named in <paramref name="deviceDescription"/>, or null.</summary>
    public static HardwarePeak? StatedFor(string deviceDescription)
    {
        foreach (var (name, bytes, flops) in s_statedGpus)
            if (deviceDescription.Contains(name, StringComparison.OrdinalIgnoreCase))
                return new HardwarePeak(bytes, flops, $"{name} stated {Format(bytes, "B/s")}", $"{name} stated {Format(flops, "FLOP/s")}");
        return null;
    }

    /// <summary>
    /// Peaks given as text (OR1_PEAK_GBPS in GB/s and OR1_PEAK_TFLOPS in TFLOP/s); null unless both are
    /// given; a value that is not a positive number is an <see cref="ArgumentException"/> naming the variable.
    /// </summary>
    public static HardwarePeak? Stated(string? gbps, string? tflops)
    {
        if (gbps is null || tflops is null) return null;
        if (!double.TryParse(gbps, NumberStyles.Float, CultureInfo.InvariantCulture, out double g) || !(g > 0) || double.IsInfinity(g))
            throw new ArgumentException($"OR1_PEAK_GBPS='{gbps}' is not a positive number of GB/s");
        if (!double.TryParse(tflops, NumberStyles.Float, CultureInfo.InvariantCulture, out double t) || !(t > 0) || double.IsInfinity(t))
            throw new ArgumentException($"OR1_PEAK_TFLOPS='{tflops}' is not a positive number of TFLOP/s");
        return new HardwarePeak(g * 1e9, t * 1e12, $"stated {Format(g * 1e9, "B/s")}", $"stated {Format(t * 1e12, "FLOP/s")}");
    }

    /// <summary>1.23e12 -> "1.23 TB/s".</summary>
    public static string Format(double value, string unit)
    {
        var (scale, prefix) = value >= 1e12 ? (1e12, "T") : value >= 1e9 ? (1e9, "G") : (1e6, "M");
        return (value / scale).ToString("G3", CultureInfo.InvariantCulture) + " " + prefix + unit;
    }
}

using System.Diagnostics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OR1.Native;
using OR1.Native.Cpu;

namespace OR1.Bench;

/// <summary>
/// The CPU's attainable peaks, measured once per process on the Cpu backend's own thread pool:
/// bandwidth is the backend's parallel copy of 256 MB (far past the caches; bytes read + written),
/// the FMA rate is a register-only loop of independent fused multiply-adds at the widest vector the
/// CPU has, on every kernel thread. Best of several runs, so a noisy neighbour lowers it less.
/// </summary>
public static class CpuPeakMeter
{
    private static readonly Lazy<HardwarePeak> s_measured = new(Measure);

    /// <summary>The measured peak (measured on first use).</summary>
    public static HardwarePeak Measured => s_measured.Value;

    private static HardwarePeak Measure()
    {
        double bandwidth = CopyBandwidth();
        double flops = FmaRate();
        return new HardwarePeak(bandwidth, flops,
            $"measured copy {HardwarePeak.Format(bandwidth, "B/s")}", $"measured FMA {HardwarePeak.Format(flops, "FLOP/s")}");
    }

    /// <summary>Bytes read + written per second by the Cpu backend's copy of 64 M floats.</summary>
    public static double CopyBandwidth()
    {
        using var backend = new CpuBackend();
        const int count = 64 << 20;
        using var source = backend.Allocate(DType.Float32, new TensorShape(count));
        using var destination = backend.Allocate(DType.Float32, new TensorShape(count));
        backend.Fill(source, 1f);
        backend.Copy(source, destination); // first touch of the destination pages
        double best = double.MaxValue;
        for (int run = 0; run < 5; run++)
        {
            long start = Stopwatch.GetTimestamp();
            backend.Copy(source, destination);
            best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        return 2.0 * count * sizeof(float) / best;
    }

    /// <summary>Floating-point operations per second of independent FMAs on all kernel threads.</summary>
    public static double FmaRate()
    {
        const int iterations = 1 << 22;
        int threads = CpuParallel.ThreadCount;
        var sink = new float[threads];
        double best = double.MaxValue;
        for (int run = 0; run < 3; run++)
        {
            long start = Stopwatch.GetTimestamp();
            CpuParallel.ForEach(threads, t => sink[t] = FmaLoop(iterations));
            best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        long flopsPerThread = (long)iterations * Accumulators * Lanes * 2;
        if (sink.Any(float.IsNaN)) throw new InvalidOperationException("FMA loop produced NaN");
        return threads * (double)flopsPerThread / best;
    }

    // Enough independent chains to cover FMA latency (4-5 cycles) times two FMA ports.
    private const int Accumulators = 12;

    /// <summary>Floats per FMA of <see cref="FmaLoop"/>: the widest vector the CPU has.</summary>
    private static int Lanes => Avx512F.IsSupported ? Vector512<float>.Count : Vector256<float>.Count;

    // Without FMA hardware Vector256.FusedMultiplyAdd is emulated: the "peak" is then that of the emulation.
    private static float FmaLoop(int iterations) => Avx512F.IsSupported ? Loop512(iterations) : Loop256(iterations);

    // One loop per vector width, written out: .NET has no public generic vector interface (ISimdVector is
    // internal), and a delegate or interface call per FMA would measure the call, not the FMA units.
    private static float Loop512(int iterations)
    {
        var m = Vector512.Create(0.999999f);
        var a = Vector512.Create(1e-7f);
        Vector512<float> x0 = m, x1 = m, x2 = m, x3 = m, x4 = m, x5 = m, x6 = m, x7 = m, x8 = m, x9 = m, x10 = m, x11 = m;
        for (int i = 0; i < iterations; i++)
        {
            x0 = Avx512F.FusedMultiplyAdd(x0, m, a); x1 = Avx512F.FusedMultiplyAdd(x1, m, a);
            x2 = Avx512F.FusedMultiplyAdd(x2, m, a); x3 = Avx512F.FusedMultiplyAdd(x3, m, a);
            x4 = Avx512F.FusedMultiplyAdd(x4, m, a); x5 = Avx512F.FusedMultiplyAdd(x5, m, a);
            x6 = Avx512F.FusedMultiplyAdd(x6, m, a); x7 = Avx512F.FusedMultiplyAdd(x7, m, a);
            x8 = Avx512F.FusedMultiplyAdd(x8, m, a); x9 = Avx512F.FusedMultiplyAdd(x9, m, a);
            x10 = Avx512F.FusedMultiplyAdd(x10, m, a); x11 = Avx512F.FusedMultiplyAdd(x11, m, a);
        }
        return Vector512.Sum(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11);
    }

    private static float Loop256(int iterations)
    {
        var m = Vector256.Create(0.999999f);
        var a = Vector256.Create(1e-7f);
        Vector256<float> x0 = m, x1 = m, x2 = m, x3 = m, x4 = m, x5 = m, x6 = m, x7 = m, x8 = m, x9 = m, x10 = m, x11 = m;
        for (int i = 0; i < iterations; i++)
        {
            x0 = Vector256.FusedMultiplyAdd(x0, m, a); x1 = Vector256.FusedMultiplyAdd(x1, m, a);
            x2 = Vector256.FusedMultiplyAdd(x2, m, a); x3 = Vector256.FusedMultiplyAdd(x3, m, a);
            x4 = Vector256.FusedMultiplyAdd(x4, m, a); x5 = Vector256.FusedMultiplyAdd(x5, m, a);
            x6 = Vector256.FusedMultiplyAdd(x6, m, a); x7 = Vector256.FusedMultiplyAdd(x7, m, a);
            x8 = Vector256.FusedMultiplyAdd(x8, m, a); x9 = Vector256.FusedMultiplyAdd(x9, m, a);
            x10 = Vector256.FusedMultiplyAdd(x10, m, a); x11 = Vector256.FusedMultiplyAdd(x11, m, a);
        }
        return Vector256.Sum(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11);
    }
}

using System.Globalization;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using OR1.Native.Cpu;
using Blas = OR1.Bench.Baselines.OpenBlas;

namespace OR1.Bench.Kernels;

/// <summary>
/// fp32 GEMM, ours (CpuGemm) against OpenBLAS at the same thread count, so the Ratio column reads
/// ours / OpenBLAS time. Shapes: the square 1024 headline, an odd square that is no multiple of any
/// tile, and a skinny ragged one; TransB covers the X * W^T layout the model's linear layers use.
/// Only the OpenBLAS cases' setup loads the library. GFLOP/s = 2 * M * N * K / mean time. The
/// per-family GemmBenchmarks time the same kernel on every backend at the model's shapes.
/// </summary>
[Config(typeof(GemmConfig))]
public unsafe class GemmVsOpenBlasBenchmarks : IThroughputBenchmark
{
    private float* _a;
    private float* _b;
    private float* _c;
    private int _m;
    private int _n;
    private int _k;

    /// <summary>M x N x K.</summary>
    [Params("1024x1024x1024", "1000x1000x1000", "255x4095x127")]
    public string Shape { get; set; } = "1024x1024x1024";

    /// <summary>B stored transposed (N x K), as in X * W^T.</summary>
    [Params(false, true)]
    public bool TransB { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        (_m, _n, _k) = ParseShape(Shape);
        _a = Alloc((long)_m * _k);
        _b = Alloc((long)_k * _n);
        _c = Alloc((long)_m * _n);
        var rng = new Random(1234);
        for (long i = 0; i < (long)_m * _k; i++) _a[i] = rng.NextSingle() - 0.5f;
        for (long i = 0; i < (long)_k * _n; i++) _b[i] = rng.NextSingle() - 0.5f;
        new Span<float>(_c, _m * _n).Clear();
    }

    // Only the OpenBLAS cases load the library (and start its worker threads).
    [GlobalSetup(Target = nameof(OpenBlas))]
    public void SetupOpenBlas()
    {
        Setup();
        Blas.EnsureAvailable();
        Blas.SetNumThreads(CpuParallel.ThreadCount);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(_a);
        NativeMemory.AlignedFree(_b);
        NativeMemory.AlignedFree(_c);
        _a = _b = _c = null;
    }

    [Benchmark(Baseline = true)]
    public void OpenBlas() =>
        Blas.Sgemm(false, TransB, _m, _n, _k, 1f, _a, _k, _b, TransB ? _k : _n, 0f, _c, _n);

    [Benchmark]
    public void Or1() =>
        CpuGemm.Multiply(false, TransB, _m, _n, _k, 1f, _a, _k, _b, TransB ? _k : _n, 0f, _c, _n);

    /// <inheritdoc />
    public long BytesMoved(string method) => 0; // compute-bound: no GB/s column

    /// <inheritdoc />
    public double Flops(string method)
    {
        var (m, n, k) = ParseShape(Shape);
        return 2.0 * m * n * k;
    }

    private static (int M, int N, int K) ParseShape(string shape)
    {
        var parts = shape.Split('x');
        return (int.Parse(parts[0], CultureInfo.InvariantCulture), int.Parse(parts[1], CultureInfo.InvariantCulture),
            int.Parse(parts[2], CultureInfo.InvariantCulture));
    }

    private static float* Alloc(long floats) => (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);

    /// <summary>Only the GFLOP/s column: GB/s means nothing here.</summary>
    private sealed class GemmConfig : BenchmarkDotNet.Configs.ManualConfig
    {
        public GemmConfig() => AddColumn(new GflopsColumn());
    }
}

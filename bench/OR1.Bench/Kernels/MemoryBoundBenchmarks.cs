using BenchmarkDotNet.Attributes;
using OR1.Native;
using OR1.Native.Cpu;

namespace OR1.Bench;

/// <summary>
/// The memory-bound ops of the Cpu backend against a parallel span copy of the same row count and width
/// measured in the same run (the baseline). Rows x width is sized well past the caches so that DRAM
/// bandwidth, not L2, is what is compared. Target: each op at least 60% of the copy's bandwidth.
/// </summary>
[Config(typeof(ThroughputConfig))]
public class MemoryBoundBenchmarks : IThroughputBenchmark, IDisposable
{
    private CpuBackend _backend = null!;
    private Tensor _x = null!, _y = null!, _z = null!, _w = null!, _invRms = null!, _positions = null!;
    private Tensor _g = null!, _m = null!, _v = null!;
    private AdamWSlot[] _slots = [];

    /// <summary>Tokens (rows).</summary>
    [Params(4096)]
    public int Rows { get; set; }

    /// <summary>Features per row: Qwen2.5-1.5B's hidden width (12 heads of 128), and an odd width (23 heads of 130, not a multiple of 8).</summary>
    [Params(1536, 2990)]
    public int Width { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend();
        var shape = new TensorShape(Rows, Width);
        _x = _backend.Allocate(DType.Float32, shape);
        _y = _backend.Allocate(DType.Float32, shape);
        _z = _backend.Allocate(DType.Float32, shape);
        _g = _backend.Allocate(DType.Float32, shape);
        _m = _backend.Allocate(DType.Float32, shape);
        _v = _backend.Allocate(DType.Float32, shape);
        _w = _backend.Allocate(DType.Float32, new TensorShape(Width));
        _invRms = _backend.Allocate(DType.Float32, new TensorShape(Rows));
        _positions = _backend.Allocate(DType.Int32, new TensorShape(Rows));
        var random = new Random(1);
        foreach (var t in new[] { _x, _y, _z, _g, _w })
        {
            var data = new float[t.ElementCount];
            for (int i = 0; i < data.Length; i++) data[i] = (float)(random.NextDouble() * 2 - 1);
            _backend.Upload<float>(data, t);
        }
        var positions = new int[Rows];
        for (int i = 0; i < Rows; i++) positions[i] = i % 2048;
        _backend.Upload<int>(positions, _positions);
        _slots = [new AdamWSlot(_x, _g, _m, _v)];
    }

    [Benchmark(Baseline = true)]
    public void SpanCopy() => _backend.Copy(_x, _y);

    [Benchmark]
    public void RmsNormForward() => _backend.RmsNormForward(_x, _w, 1e-6f, _y, _invRms);

    [Benchmark]
    public void RopeForward() => _backend.RopeForward(_x, _positions, Width / HeadDim, HeadDim, 10000f, _y);

    private int HeadDim => Width % 128 == 0 ? 128 : 130;

    [Benchmark]
    public void SwiGluForward() => _backend.SwiGluForward(_x, _y, _z);

    [Benchmark]
    public void AdamWStep() => _backend.AdamWStep(_slots, new AdamWOptions(1e-6), 1, 1f);

    public long BytesMoved(string method)
    {
        long plane = (long)Rows * Width * sizeof(float);
        return method switch
        {
            nameof(SpanCopy) => 2 * plane,
            nameof(RmsNormForward) => 2 * plane + Rows * sizeof(float),
            nameof(RopeForward) => 2 * plane + Rows * sizeof(int),
            nameof(SwiGluForward) => 3 * plane,
            nameof(AdamWStep) => 7 * plane, // read p, g, m, v; write p, m, v
            _ => 0,
        };
    }

    public double Flops(string method) => 0;

    [GlobalCleanup]
    public void Dispose()
    {
        foreach (var t in new[] { _x, _y, _z, _w, _invRms, _positions, _g, _m, _v }) t?.Dispose();
        GC.SuppressFinalize(this);
    }
}

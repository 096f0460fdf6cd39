using BenchmarkDotNet.Attributes;
using OR1.Native;

namespace OR1.Bench.Kernels;

/// <summary>
/// Fused causal grouped-query attention (kernels/attention.cu, Cpu/Attention.cs, Ilgpu/Attention.cs)
/// over packed sequences, forward and backward, counted as FlashAttention does (<see cref="KernelCost"/>:
/// 4 S² H D per sequence, halved for causal; backward 2.5x). Decode is one query row per sequence
/// against its KV cache (kernels/attention_decode.cu, flash-decoding): bound by reading the cache, so it reports GB/s and
/// runs <see cref="KernelBenchmark.Launches"/> launches per operation; <see cref="DecodeOneLongRow"/> reads the same bytes
/// as one row with a cache that many times longer, the shape that only a split over the sequence fills a device with.
/// Each case runs in fp32 storage (the CUDA-core kernels of attention_simt.cu on the kernel backends) and, on the backends
/// that store bf16, in bf16 storage (the tensor-core kernels of attention.cu): the cases ending in "/bf16".
/// <code>dotnet run -c Release --project bench/OR1.Bench -- --filter '*Attention*'</code>
/// </summary>
public class AttentionBenchmarks : KernelBenchmark
{
    private Tensor _q = null!, _k = null!, _v = null!, _o = null!, _lse = null!, _dO = null!, _dq = null!, _dk = null!, _dv = null!;
    private Segments _sequences = null!;
    private Tensor _decodeQ = null!, _keyCache = null!, _valueCache = null!, _slots = null!, _lengths = null!, _decodeOut = null!;
    private Tensor _longQ = null!, _longKeyCache = null!, _longValueCache = null!, _longSlot = null!, _longLength = null!, _longOut = null!;

    private AttentionHeads Heads => Model.Heads;

    /// <summary>Packed sequence lengths: equal, or for the odd shape S-1, S-3, ... (no tile divides them).</summary>
    private int[] SequenceLengths => Case.Lengths(Scale.Sequences, Scale.SequenceLength);

    private int[] CacheLengths => Case.Lengths(Scale.DecodeRows, Scale.DecodeLength);

    /// <summary>The long row's cache: as many positions as all decode rows' caches together.</summary>
    private int LongCacheLength => CacheLengths.Sum();

    /// <inheritdoc />
    public override IEnumerable<KernelCase> Cases() => KernelCase.ForModelsInEachStorage();

    protected override void Allocate(Random random)
    {
        var lengths = SequenceLengths;
        int n = lengths.Sum();
        _sequences = SegmentsOf(lengths);
        _q = Stored(random, new TensorShape(n, Heads.QueryWidth));
        _k = Stored(random, new TensorShape(n, Heads.KvWidth));
        _v = Stored(random, new TensorShape(n, Heads.KvWidth));
        _o = StoredZeros(new TensorShape(n, Heads.QueryWidth));
        _lse = Zeros(new TensorShape(n, Heads.NumHeads)); // fp32 in both storages
        _dO = Stored(random, new TensorShape(n, Heads.QueryWidth));
        _dq = StoredZeros(new TensorShape(n, Heads.QueryWidth));
        _dk = StoredZeros(new TensorShape(n, Heads.KvWidth));
        _dv = StoredZeros(new TensorShape(n, Heads.KvWidth));
        Backend.AttentionForward(_q, _k, _v, _sequences, Heads, Heads.DefaultScale, _o, _lse);

        int rows = Scale.DecodeRows;
        _decodeQ = Stored(random, new TensorShape(rows, Heads.QueryWidth));
        _keyCache = Stored(random, new TensorShape(rows, Scale.DecodeLength, Heads.KvWidth));
        _valueCache = Stored(random, new TensorShape(rows, Scale.DecodeLength, Heads.KvWidth));
        _slots = Ints(Enumerable.Range(0, rows).ToArray());
        _lengths = Ints(CacheLengths);
        _decodeOut = StoredZeros(new TensorShape(rows, Heads.QueryWidth));
        // The long row reuses the decode caches' memory, viewed as one slot (the same bytes, contiguous).
        _longKeyCache = _keyCache.Reshape(1, rows * Scale.DecodeLength, Heads.KvWidth);
        _longValueCache = _valueCache.Reshape(1, rows * Scale.DecodeLength, Heads.KvWidth);
        _longSlot = Ints([0]);
        _longLength = Ints([LongCacheLength]);
        _longQ = _decodeQ.SliceRows(0, 1);
        _longOut = _decodeOut.SliceRows(0, 1);
    }

    [Benchmark]
    public void Forward()
    {
        Backend.AttentionForward(_q, _k, _v, _sequences, Heads, Heads.DefaultScale, _o, _lse);
        Backend.Synchronize();
    }

    [Benchmark]
    public void Backward()
    {
        Backend.AttentionBackward(_dO, _q, _k, _v, _o, _lse, _sequences, Heads, Heads.DefaultScale, _dq, _dk, _dv);
        Backend.Synchronize();
    }

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Decode() => Repeat<AttentionBenchmarks>(static b =>
        b.Backend.AttentionDecode(b._decodeQ, b._keyCache, b._valueCache, b._slots, b._lengths, b.Heads, b.Heads.DefaultScale, b._decodeOut));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void DecodeOneLongRow() => Repeat<AttentionBenchmarks>(static b =>
        b.Backend.AttentionDecode(b._longQ, b._longKeyCache, b._longValueCache, b._longSlot, b._longLength, b.Heads, b.Heads.DefaultScale, b._longOut));

    public override long BytesMoved(string method) => method switch
    {
        nameof(DecodeOneLongRow) => (2L * LongCacheLength * Heads.KvWidth + 2L * Heads.QueryWidth) * Case.Storage.SizeOf(),
        // Each row reads its cache prefix (keys and values), its query and writes its output.
        nameof(Decode) => (CacheLengths.Sum(l => 2L * l * Heads.KvWidth) + 2L * Scale.DecodeRows * Heads.QueryWidth) * Case.Storage.SizeOf(),
        _ => 0, // compute-bound: judged by GFLOP/s
    };

    public override double Flops(string method) => method switch
    {
        nameof(Forward) => KernelCost.AttentionForwardFlops(SequenceLengths, Heads),
        nameof(Backward) => KernelCost.AttentionBackwardFlops(SequenceLengths, Heads),
        _ => 0, // decode is memory-bound: % peak is against bandwidth
    };
}

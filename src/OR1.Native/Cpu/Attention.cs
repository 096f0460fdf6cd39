using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

/// <summary>
/// Fused causal grouped-query attention for the Cpu backend: FlashAttention-2 tiling in fp32, so the
/// [S, S] score matrix never exists and each K/V row is loaded once per tile of query rows.
/// </summary>
/// <remarks>
/// <para>A tile is the G = Hq / Hkv query heads of one kv group over a block of query rows (about 64
/// query vectors): the G heads share every K/V row, so grouping them multiplies the reuse of each
/// loaded key by G. Every product is one small GEMM on GEMM's register-tiled micro-kernel, reading its
/// operands where they lie (<see cref="CpuGemm.MultiplyStrided"/>: A row by row or transposed, B along the
/// output columns); scores contract over the head dimension, so K (and V, for dP) are first transposed
/// once per call into a per-caller pack. That is O(N·D) work against O(S²·D) attention.</para>
/// <para>The backward runs as two passes so that every output row has exactly one writer: deterministic
/// for any fixed thread count, with no atomics and no per-thread partial buffers. Pass 1 walks query
/// tiles, recomputes P and accumulates dQ; pass 2 walks key blocks, recomputes P for the query tiles at
/// or below them and accumulates dKᵀ and dVᵀ (transposed, so the GEMM streams P and dS rows). Computing
/// P twice costs 7 instead of 5 GEMM-equivalents, but memory stays O(N) and both passes scale with the
/// threads even for one long sequence and one kv head.</para>
/// <para>Work items are (sequence, kv head, block) triples listed most expensive first (causal cost grows
/// along a sequence) and claimed dynamically by the pool; each writes only its own rows, so which
/// thread runs it does not change a bit of the result. Tile sizes shrink with more threads (to keep
/// every thread busy), but every output element still sums the same terms in the same order (with
/// AVX-512 the micro-kernel adds each term onto the running value) and a smaller tile only adds exact
/// zeros, so in practice results also match across thread counts.</para>
/// <para>The files: AttentionForward.cs, AttentionBackward.cs and AttentionDecode.cs hold the entry
/// points and their work items; AttentionJob.cs the call's arguments and work-item table;
/// AttentionTiles.cs the packing, tile loads and masked score tiles that forward and backward share;
/// AttentionSpans.cs the softmax spans and their merge that forward and decode share (so a decoded row has the
/// forward's bits); AttentionVectorMath.cs the row helpers.</para>
/// </remarks>
internal static unsafe partial class CpuAttention
{
    /// <summary>Keys per score tile (forward, dQ pass), and key rows per dK/dV item before shrinking.</summary>
    private const int KeyBlock = 64;

    /// <summary>
    /// Query vectors (rows × heads of a group) per tile: a 64 × 64 score tile is 16 KiB, which stays in
    /// L1 beside the key panel it is multiplied with.
    /// </summary>
    private const int TileVectors = 64;

    /// <summary>Tiles are not shrunk below this many query vectors for load balance; GEMM efficiency drops fast below it.</summary>
    private const int MinTileVectors = 16;

    /// <summary>Rows per packing work item.</summary>
    private const int PackRows = 128;

    /// <summary>Below this many multiply-adds a call runs on the calling thread: the fork would cost more than it saves.</summary>
    private const long InlineWork = 1 << 15;

    /// <summary>
    /// Scores are kept in base 2 (queries are pre-scaled by scale · log2 e), so softmax exponentials are
    /// 2^x: the range reduction is one exact subtraction instead of a two-constant Cody-Waite step.
    /// </summary>
    private const float Log2E = 1.44269504088896341f;
    private const float Ln2 = 0.693147180559945309f;

    private static bool Simd => Fma.IsSupported && Avx2.IsSupported && Vector256.IsHardwareAccelerated;

    /// <summary>Per worker thread: tile scratch, reused across calls so the steady state allocates nothing.</summary>
    [ThreadStatic] private static Scratch? t_tile;

    /// <summary>Per calling thread: the packs of one call, shared read-only by its workers.</summary>
    [ThreadStatic] private static Scratch? t_pack;

    /// <summary>Per calling thread: the job whose cached delegates the pool runs, so a call allocates no closures.</summary>
    [ThreadStatic] private static Job? t_job;

    /// <summary>The calling thread's job, set up for a forward or backward call over packed sequences.</summary>
    private static Job SequenceJob(int[] offsets, int numHeads, int numKvHeads, int headDim, float scale,
        float* q, float* k, float* v, float* output, float* logSumExp)
    {
        var job = t_job ??= new Job();
        job.Init(offsets, numHeads, numKvHeads, headDim, scale);
        job.Q = q; job.K = k; job.V = v; job.O = output; job.Lse = logSumExp;
        return job;
    }

    private static void RunItems(int count, Action<int> body, long work)
    {
        if (count <= 0) return;
        if (work < InlineWork || count == 1)
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        CpuParallel.ForEach(count, body);
    }

    /// <summary>A pinned, 32-byte aligned buffer that only grows.</summary>
    private sealed class Scratch
    {
        private float[] _buffer = [];

        public float* Rent(long floats)
        {
            if (_buffer.Length < floats + 8)
            {
                // Some slack so a slowly growing shape does not reallocate every call.
                long size = floats + floats / 8 + 16;
                _buffer = GC.AllocateUninitializedArray<float>(checked((int)size), pinned: true);
            }
            nint p = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_buffer));
            return (float*)((p + 31) & ~(nint)31);
        }
    }

    private static int RoundUp8(int x) => (x + 7) & ~7;

    private static long Align8(long x) => (x + 7) & ~7L;

    private static float* RentTile(long floats) => (t_tile ??= new Scratch()).Rent(floats);
}

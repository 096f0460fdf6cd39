using ILGPU;
using ILGPU.Runtime;

namespace OR1.Native.Ilgpu;

/// <summary>
/// Fused causal grouped-query attention over packed sequences, FlashAttention-2 style: scores never
/// exist as an [S, S] matrix; K and V are staged in shared memory a tile at a time and every query row
/// keeps an online softmax (running max m, running sum l, unnormalised output) that the tile updates.
/// </summary>
/// <remarks>
/// <para>Work decomposition. A "query vector" is one (row, query head); the G = Hq / Hkv heads of a kv
/// group are adjacent, so a group of warps (one warp per vector) covering consecutive vectors shares
/// every K/V tile it loads across G heads. Tiles of packed rows may straddle a sequence boundary: each
/// row finds its sequence start by binary search over the offsets, and key j is visible to row i iff
/// start(i) &lt;= j &lt;= i, so no host-side work list is needed.</para>
/// <para>Inside a warp, lanes split the keys of a tile for the scores (dot products over the head
/// dimension, K rows padded by one float against bank conflicts) and split the head dimension for the
/// output update, exchanging probabilities through a per-warp shared row.</para>
/// <para>Backward (FlashAttention-2's, without atomics): Di = rowsum(dO ∘ O); then a dQ pass over query
/// vectors (recompute P = exp(S - lse), dS = P (dO Vᵀ - Di), dQ = scale dS K) and a dK/dV pass in which a
/// warp owns one key row and walks the query rows at or after it in its sequence for each of the G query
/// heads (dV = Σ P dO, dK = scale Σ dS Q). Every output element has one writer and a fixed summation
/// order: deterministic.</para>
/// <para>Decode: one group per (batch entry, query head); warps take interleaved key tiles of the cache
/// with private online-softmax states, merged in warp order at the end.</para>
/// <para>Shared memory is sized for head dimensions up to <see cref="MaxHeadDim"/>, key tiles of
/// <see cref="MaxKeyTile"/> and up to <see cref="MaxWarps"/> warps (under CUDA's 48 KiB static limit).</para>
/// </remarks>
internal static class IlgpuAttention
{
    public const int MaxHeadDim = 128;
    public const int MaxKeyTile = 32;
    public const int MaxWarps = 8;
    public const int MaxBackwardWarps = 4;
    public const int MaxQueryTile = 32;
    private const int PaddedHeadDim = MaxHeadDim + 1;

    /// <summary>Geometry of one call.</summary>
    public struct AttentionArgs
    {
        public int N, Hq, Hkv, D, G, Segments, KeyTile, QueryTile, Batch, MaxLength, Slots, PageSize, PagesPerRow;
        public float Scale;
    }

    /// <summary>Index of the segment containing <paramref name="row"/>: the largest s with offsets[s] &lt;= row.</summary>
    private static int SegmentOf(ArrayView<int> offsets, int segments, int row)
    {
        int lo = 0, hi = segments - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >> 1;
            if (offsets[mid] <= row) lo = mid;
            else hi = mid - 1;
        }
        return lo;
    }

    private static float Dot(ArrayView<float> a, int aAt, ArrayView<float> b, int bAt, int length)
    {
        float sum = 0f;
        for (int d = 0; d < length; d++) sum += a[aAt + d] * b[bAt + d];
        return sum;
    }

    [IlgpuKernel]
    public static void ForwardKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> offsets,
        ArrayView<float> output, ArrayView<float> logSumExp, AttentionArgs a)
    {
        var ks = SharedMemory.Allocate<float>(MaxKeyTile * PaddedHeadDim);
        var vs = SharedMemory.Allocate<float>(MaxKeyTile * MaxHeadDim);
        var qs = SharedMemory.Allocate<float>(MaxWarps * MaxHeadDim);
        var os = SharedMemory.Allocate<float>(MaxWarps * MaxHeadDim);
        var ps = SharedMemory.Allocate<float>(MaxWarps * MaxKeyTile);
        int lane = Warp.LaneIdx, warp = Warp.WarpIdx, width = Warp.WarpSize, warps = Collectives.WarpsPerGroup;
        int tid = Group.IdxX, threads = Group.DimX;
        int d = a.D, dp = d + 1, kt = a.KeyTile, hk = Grid.IdxY;
        int qStride = a.Hq * d, kvStride = a.Hkv * d;
        long vectors = (long)a.N * a.G;
        long tiles = (vectors + warps - 1) / warps;
        int qAt = warp * MaxHeadDim, pAt = warp * MaxKeyTile;
        for (long tile = Grid.IdxX; tile < tiles; tile += Grid.DimX)
        {
            long v0 = tile * warps, vLast = Math.Min(v0 + warps, vectors) - 1;
            int firstRow = (int)(v0 / a.G), lastRow = (int)(vLast / a.G);
            int kStart = offsets[SegmentOf(offsets, a.Segments, firstRow)], kEnd = lastRow + 1;
            long vi = v0 + warp;
            bool valid = vi < vectors;
            int row = valid ? (int)(vi / a.G) : firstRow;
            int h = hk * a.G + (valid ? (int)(vi % a.G) : 0);
            int myStart = offsets[SegmentOf(offsets, a.Segments, row)];
            for (int e = lane; e < d; e += width)
            {
                qs[qAt + e] = valid ? q[(long)row * qStride + h * d + e] * a.Scale : 0f;
                os[qAt + e] = 0f;
            }
            float m = float.NegativeInfinity, l = 0f;
            for (int kt0 = kStart; kt0 < kEnd; kt0 += kt)
            {
                Group.Barrier();
                for (int e = tid; e < kt * d; e += threads)
                {
                    int jj = e / d, c = e - jj * d, j = kt0 + jj;
                    bool inside = j < kEnd;
                    ks[jj * dp + c] = inside ? k[(long)j * kvStride + hk * d + c] : 0f;
                    vs[jj * d + c] = inside ? v[(long)j * kvStride + hk * d + c] : 0f;
                }
                Group.Barrier();
                float tileMax = float.NegativeInfinity;
                for (int jj = lane; jj < kt; jj += width)
                {
                    int j = kt0 + jj;
                    float s = float.NegativeInfinity;
                    if (valid && j >= myStart && j <= row) s = Dot(qs, qAt, ks, jj * dp, d);
                    ps[pAt + jj] = s;
                    tileMax = MathF.Max(tileMax, s);
                }
                tileMax = Collectives.WarpMax(tileMax);
                float newM = MathF.Max(m, tileMax);
                float alpha = m == float.NegativeInfinity ? 0f : MathF.Exp(m - newM);
                float sum = 0f;
                for (int jj = lane; jj < kt; jj += width)
                {
                    float s = ps[pAt + jj];
                    float p = s == float.NegativeInfinity ? 0f : MathF.Exp(s - newM);
                    ps[pAt + jj] = p;
                    sum += p;
                }
                sum = Collectives.WarpSum(sum);
                l = l * alpha + sum;
                m = newM;
                Warp.Barrier();
                for (int e = lane; e < d; e += width)
                {
                    float acc = os[qAt + e] * alpha;
                    for (int jj = 0; jj < kt; jj++) acc += ps[pAt + jj] * vs[jj * d + e];
                    os[qAt + e] = acc;
                }
            }
            if (valid)
            {
                long outAt = (long)row * qStride + h * d;
                for (int e = lane; e < d; e += width) output[outAt + e] = os[qAt + e] / l;
                if (lane == 0) logSumExp[(long)row * a.Hq + h] = m + MathF.Log(l);
            }
            Group.Barrier();
        }
    }

    /// <summary>Di[n, h] = Σ_d dO[n, h, d] O[n, h, d]: one warp per (row, head).</summary>
    [IlgpuKernel]
    public static void RowDotKernel(ArrayView<float> dOutput, ArrayView<float> output, ArrayView<float> rowDots, int vectors, int headDim)
    {
        int warps = Collectives.WarpsPerGroup;
        for (int first = Grid.IdxX * warps; first < vectors; first += Grid.DimX * warps)
        {
            int vi = first + Warp.WarpIdx;
            float sum = 0f;
            if (vi < vectors)
            {
                long at = (long)vi * headDim;
                for (int e = Warp.LaneIdx; e < headDim; e += Warp.WarpSize) sum += dOutput[at + e] * output[at + e];
            }
            sum = Collectives.WarpSum(sum);
            if (vi < vectors && Warp.LaneIdx == 0) rowDots[vi] = sum;
        }
    }

    [IlgpuKernel]
    public static void BackwardQueryKernel(ArrayView<float> dOutput, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> logSumExp, ArrayView<float> rowDots, ArrayView<int> offsets, ArrayView<float> dq, AttentionArgs a)
    {
        var ks = SharedMemory.Allocate<float>(MaxKeyTile * PaddedHeadDim);
        var vs = SharedMemory.Allocate<float>(MaxKeyTile * PaddedHeadDim);
        var qs = SharedMemory.Allocate<float>(MaxWarps * MaxHeadDim);
        var dos = SharedMemory.Allocate<float>(MaxWarps * MaxHeadDim);
        var dqs = SharedMemory.Allocate<float>(MaxWarps * MaxHeadDim);
        var ps = SharedMemory.Allocate<float>(MaxWarps * MaxKeyTile);
        int lane = Warp.LaneIdx, warp = Warp.WarpIdx, width = Warp.WarpSize, warps = Collectives.WarpsPerGroup;
        int tid = Group.IdxX, threads = Group.DimX;
        int d = a.D, dp = d + 1, kt = a.KeyTile, hk = Grid.IdxY;
        int qStride = a.Hq * d, kvStride = a.Hkv * d;
        long vectors = (long)a.N * a.G;
        long tiles = (vectors + warps - 1) / warps;
        int qAt = warp * MaxHeadDim, pAt = warp * MaxKeyTile;
        for (long tile = Grid.IdxX; tile < tiles; tile += Grid.DimX)
        {
            long v0 = tile * warps, vLast = Math.Min(v0 + warps, vectors) - 1;
            int firstRow = (int)(v0 / a.G), lastRow = (int)(vLast / a.G);
            int kStart = offsets[SegmentOf(offsets, a.Segments, firstRow)], kEnd = lastRow + 1;
            long vi = v0 + warp;
            bool valid = vi < vectors;
            int row = valid ? (int)(vi / a.G) : firstRow;
            int h = hk * a.G + (valid ? (int)(vi % a.G) : 0);
            int myStart = offsets[SegmentOf(offsets, a.Segments, row)];
            long rowAt = (long)row * qStride + h * d;
            float lse = valid ? logSumExp[(long)row * a.Hq + h] : 0f;
            float di = valid ? rowDots[(long)row * a.Hq + h] : 0f;
            for (int e = lane; e < d; e += width)
            {
                qs[qAt + e] = valid ? q[rowAt + e] * a.Scale : 0f;
                dos[qAt + e] = valid ? dOutput[rowAt + e] : 0f;
                dqs[qAt + e] = 0f;
            }
            for (int kt0 = kStart; kt0 < kEnd; kt0 += kt)
            {
                Group.Barrier();
                for (int e = tid; e < kt * d; e += threads)
                {
                    int jj = e / d, c = e - jj * d, j = kt0 + jj;
                    bool inside = j < kEnd;
                    ks[jj * dp + c] = inside ? k[(long)j * kvStride + hk * d + c] : 0f;
                    vs[jj * dp + c] = inside ? v[(long)j * kvStride + hk * d + c] : 0f;
                }
                Group.Barrier();
                for (int jj = lane; jj < kt; jj += width)
                {
                    int j = kt0 + jj;
                    float ds = 0f;
                    if (valid && j >= myStart && j <= row)
                    {
                        float p = MathF.Exp(Dot(qs, qAt, ks, jj * dp, d) - lse);
                        ds = p * (Dot(dos, qAt, vs, jj * dp, d) - di);
                    }
                    ps[pAt + jj] = ds;
                }
                Warp.Barrier();
                for (int e = lane; e < d; e += width)
                {
                    float acc = dqs[qAt + e];
                    for (int jj = 0; jj < kt; jj++) acc += ps[pAt + jj] * ks[jj * dp + e];
                    dqs[qAt + e] = acc;
                }
            }
            if (valid)
                for (int e = lane; e < d; e += width) dq[rowAt + e] = dqs[qAt + e] * a.Scale;
            Group.Barrier();
        }
    }

    [IlgpuKernel]
    public static void BackwardKeyValueKernel(ArrayView<float> dOutput, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> logSumExp, ArrayView<float> rowDots, ArrayView<int> offsets, ArrayView<float> dk, ArrayView<float> dv, AttentionArgs a)
    {
        var qs = SharedMemory.Allocate<float>(MaxQueryTile * PaddedHeadDim);
        var dos = SharedMemory.Allocate<float>(MaxQueryTile * PaddedHeadDim);
        var lses = SharedMemory.Allocate<float>(MaxQueryTile);
        var dis = SharedMemory.Allocate<float>(MaxQueryTile);
        var kr = SharedMemory.Allocate<float>(MaxBackwardWarps * MaxHeadDim);
        var vr = SharedMemory.Allocate<float>(MaxBackwardWarps * MaxHeadDim);
        var dka = SharedMemory.Allocate<float>(MaxBackwardWarps * MaxHeadDim);
        var dva = SharedMemory.Allocate<float>(MaxBackwardWarps * MaxHeadDim);
        var ps = SharedMemory.Allocate<float>(MaxBackwardWarps * MaxQueryTile);
        var dss = SharedMemory.Allocate<float>(MaxBackwardWarps * MaxQueryTile);
        int lane = Warp.LaneIdx, warp = Warp.WarpIdx, width = Warp.WarpSize, warps = Collectives.WarpsPerGroup;
        int tid = Group.IdxX, threads = Group.DimX;
        int d = a.D, dp = d + 1, qt = a.QueryTile, hk = Grid.IdxY;
        int qStride = a.Hq * d, kvStride = a.Hkv * d;
        int tiles = (a.N + warps - 1) / warps;
        int rAt = warp * MaxHeadDim, pAt = warp * MaxQueryTile;
        for (int tile = Grid.IdxX; tile < tiles; tile += Grid.DimX)
        {
            int kt0 = tile * warps, kLast = Math.Min(kt0 + warps, a.N) - 1;
            int j = kt0 + warp;
            bool valid = j < a.N;
            int myEnd = offsets[SegmentOf(offsets, a.Segments, valid ? j : kLast) + 1];
            int qEnd = offsets[SegmentOf(offsets, a.Segments, kLast) + 1];
            long keyAt = (long)(valid ? j : kLast) * kvStride + hk * d;
            for (int e = lane; e < d; e += width)
            {
                kr[rAt + e] = valid ? k[keyAt + e] : 0f;
                vr[rAt + e] = valid ? v[keyAt + e] : 0f;
                dka[rAt + e] = 0f;
                dva[rAt + e] = 0f;
            }
            for (int g = 0; g < a.G; g++)
            {
                int h = hk * a.G + g;
                for (int qt0 = kt0; qt0 < qEnd; qt0 += qt)
                {
                    Group.Barrier();
                    for (int e = tid; e < qt * d; e += threads)
                    {
                        int ii = e / d, c = e - ii * d, i = qt0 + ii;
                        bool inside = i < qEnd;
                        long at = (long)i * qStride + h * d + c;
                        qs[ii * dp + c] = inside ? q[at] * a.Scale : 0f;
                        dos[ii * dp + c] = inside ? dOutput[at] : 0f;
                    }
                    for (int ii = tid; ii < qt; ii += threads)
                    {
                        int i = qt0 + ii;
                        bool inside = i < qEnd;
                        lses[ii] = inside ? logSumExp[(long)i * a.Hq + h] : 0f;
                        dis[ii] = inside ? rowDots[(long)i * a.Hq + h] : 0f;
                    }
                    Group.Barrier();
                    for (int ii = lane; ii < qt; ii += width)
                    {
                        int i = qt0 + ii;
                        float p = 0f, ds = 0f;
                        if (valid && i >= j && i < myEnd)
                        {
                            p = MathF.Exp(Dot(qs, ii * dp, kr, rAt, d) - lses[ii]);
                            ds = p * (Dot(dos, ii * dp, vr, rAt, d) - dis[ii]);
                        }
                        ps[pAt + ii] = p;
                        dss[pAt + ii] = ds;
                    }
                    Warp.Barrier();
                    for (int e = lane; e < d; e += width)
                    {
                        float accV = dva[rAt + e], accK = dka[rAt + e];
                        for (int ii = 0; ii < qt; ii++)
                        {
                            accV += ps[pAt + ii] * dos[ii * dp + e];
                            accK += dss[pAt + ii] * qs[ii * dp + e];
                        }
                        dva[rAt + e] = accV;
                        dka[rAt + e] = accK;
                    }
                }
            }
            if (valid)
            {
                for (int e = lane; e < d; e += width)
                {
                    dk[keyAt + e] = dka[rAt + e];
                    dv[keyAt + e] = dva[rAt + e];
                }
            }
            Group.Barrier();
        }
    }

    /// <summary>The cache row of position j of the row whose page table starts at tableAt (IBackend.AttentionDecode's paging).</summary>
    private static long CacheRow(ArrayView<int> pageTable, long tableAt, int j, int pageSize) =>
        (long)pageTable[tableAt + j / pageSize] * pageSize + j % pageSize;

    [IlgpuKernel]
    public static void DecodeKernel(ArrayView<float> q, ArrayView<float> keyCache, ArrayView<float> valueCache, ArrayView<int> pageTable,
        ArrayView<int> lengths, ArrayView<float> output, AttentionArgs a)
    {
        var qs = SharedMemory.Allocate<float>(MaxHeadDim);
        var os = SharedMemory.Allocate<float>(MaxWarps * MaxHeadDim);
        var ps = SharedMemory.Allocate<float>(MaxWarps * MaxKeyTile);
        var ms = SharedMemory.Allocate<float>(MaxWarps);
        var ls = SharedMemory.Allocate<float>(MaxWarps);
        int lane = Warp.LaneIdx, warp = Warp.WarpIdx, width = Warp.WarpSize, warps = Collectives.WarpsPerGroup;
        int d = a.D, kt = a.KeyTile, h = Grid.IdxY, hk = h / a.G;
        int qStride = a.Hq * d, kvStride = a.Hkv * d;
        int oAt = warp * MaxHeadDim, pAt = warp * MaxKeyTile;
        for (int b = Grid.IdxX; b < a.Batch; b += Grid.DimX)
        {
            int length = lengths[b];
            long tableAt = (long)b * a.PagesPerRow, headAt = hk * d;
            long qAt = (long)b * qStride + h * d;
            for (int e = Group.IdxX; e < d; e += Group.DimX) qs[e] = q[qAt + e] * a.Scale;
            for (int e = lane; e < d; e += width) os[oAt + e] = 0f;
            Group.Barrier();
            float m = float.NegativeInfinity, l = 0f;
            int tiles = (length + kt - 1) / kt;
            for (int t = warp; t < tiles; t += warps)
            {
                int kt0 = t * kt;
                float tileMax = float.NegativeInfinity;
                for (int jj = lane; jj < kt; jj += width)
                {
                    int j = kt0 + jj;
                    float s = float.NegativeInfinity;
                    if (j < length) s = DotGlobal(qs, keyCache, CacheRow(pageTable, tableAt, j, a.PageSize) * kvStride + headAt, d);
                    ps[pAt + jj] = s;
                    tileMax = MathF.Max(tileMax, s);
                }
                tileMax = Collectives.WarpMax(tileMax);
                float newM = MathF.Max(m, tileMax);
                float alpha = m == float.NegativeInfinity ? 0f : MathF.Exp(m - newM);
                float sum = 0f;
                for (int jj = lane; jj < kt; jj += width)
                {
                    float s = ps[pAt + jj];
                    float p = s == float.NegativeInfinity ? 0f : MathF.Exp(s - newM);
                    ps[pAt + jj] = p;
                    sum += p;
                }
                sum = Collectives.WarpSum(sum);
                l = l * alpha + sum;
                m = newM;
                Warp.Barrier();
                int keys = Math.Min(kt, length - kt0);
                for (int e = lane; e < d; e += width)
                {
                    float acc = os[oAt + e] * alpha;
                    for (int jj = 0; jj < keys; jj++)
                        acc += ps[pAt + jj] * valueCache[CacheRow(pageTable, tableAt, kt0 + jj, a.PageSize) * kvStride + headAt + e];
                    os[oAt + e] = acc;
                }
                Warp.Barrier();
            }
            if (lane == 0)
            {
                ms[warp] = m;
                ls[warp] = l;
            }
            Group.Barrier();
            float total = 0f, max = float.NegativeInfinity;
            for (int w = 0; w < warps; w++) max = MathF.Max(max, ms[w]);
            for (int w = 0; w < warps; w++) if (ls[w] != 0f) total += ls[w] * MathF.Exp(ms[w] - max);
            for (int e = Group.IdxX; e < d; e += Group.DimX)
            {
                float acc = 0f;
                for (int w = 0; w < warps; w++) if (ls[w] != 0f) acc += os[w * MaxHeadDim + e] * MathF.Exp(ms[w] - max);
                output[qAt + e] = acc / total;
            }
            Group.Barrier();
        }
    }

    private static float DotGlobal(ArrayView<float> shared, ArrayView<float> global, long at, int length)
    {
        float sum = 0f;
        for (int e = 0; e < length; e++) sum += shared[e] * global[at + e];
        return sum;
    }

    // ---------------------------------------------------------------- host side

    public static AttentionArgs Args(IlgpuDevice device, int n, AttentionHeads heads, int segments, float scale) => new()
    {
        N = n, Hq = heads.NumHeads, Hkv = heads.NumKvHeads, D = heads.HeadDim, G = heads.GroupSize, Segments = segments,
        KeyTile = device.Profile.AttentionKeyTile, QueryTile = device.Profile.AttentionQueryTile, Scale = scale,
    };

    public static void Forward(IlgpuDevice device, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> offsets,
        ArrayView<float> output, ArrayView<float> logSumExp, AttentionArgs args)
    {
        if (args.N == 0) return;
        var p = device.Profile;
        int warps = p.AttentionWarps;
        long tiles = ((long)args.N * args.G + warps - 1) / warps;
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, AttentionArgs>(ForwardKernel)(
            new KernelConfig(new Index2D(GridX(device, tiles), args.Hkv), new Index2D(warps * p.WarpSize, 1)), q, k, v, offsets, output, logSumExp, args);
    }

    public static void Backward(IlgpuDevice device, ArrayView<float> dOutput, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> output, ArrayView<float> logSumExp, ArrayView<int> offsets, ArrayView<float> rowDots,
        ArrayView<float> dq, ArrayView<float> dk, ArrayView<float> dv, AttentionArgs args)
    {
        if (args.N == 0) return;
        var p = device.Profile;
        int vectors = args.N * args.Hq;
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(RowDotKernel)(
            new KernelConfig(p.Groups(vectors, p.WarpsPerBlock), p.BlockThreads), dOutput, output, rowDots, vectors, args.D);
        int warps = p.AttentionWarps;
        long tiles = ((long)args.N * args.G + warps - 1) / warps;
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>,
            ArrayView<float>, AttentionArgs>(BackwardQueryKernel)(
            new KernelConfig(new Index2D(GridX(device, tiles), args.Hkv), new Index2D(warps * p.WarpSize, 1)),
            dOutput, q, k, v, logSumExp, rowDots, offsets, dq, args);
        int backwardWarps = p.AttentionBackwardWarps;
        long keyTiles = (args.N + backwardWarps - 1) / backwardWarps;
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>,
            ArrayView<float>, ArrayView<float>, AttentionArgs>(BackwardKeyValueKernel)(
            new KernelConfig(new Index2D(GridX(device, keyTiles), args.Hkv), new Index2D(backwardWarps * p.WarpSize, 1)),
            dOutput, q, k, v, logSumExp, rowDots, offsets, dk, dv, args);
    }

    public static void Decode(IlgpuDevice device, ArrayView<float> q, ArrayView<float> keyCache, ArrayView<float> valueCache,
        ArrayView<int> pageTable, ArrayView<int> lengths, ArrayView<float> output, AttentionArgs args)
    {
        if (args.Batch == 0) return;
        var p = device.Profile;
        int warps = p.AttentionWarps;
        device.Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, AttentionArgs>(DecodeKernel)(
            new KernelConfig(new Index2D(GridX(device, args.Batch), args.Hq), new Index2D(warps * p.WarpSize, 1)),
            q, keyCache, valueCache, pageTable, lengths, output, args);
    }

    /// <summary>Groups along x: every tile on a GPU (x may be as large as 2^31 - 1), a few grid-stride groups on the simulator.</summary>
    private static int GridX(IlgpuDevice device, long tiles) =>
        device.Accelerator.AcceleratorType == AcceleratorType.Cuda
            ? (int)Math.Clamp(tiles, 1, int.MaxValue)
            : device.Profile.Groups(tiles);
}

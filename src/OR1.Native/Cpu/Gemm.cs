using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

/// <summary>
/// Single-precision GEMM in the GotoBLAS/BLIS shape: for each NC-column, KC-deep panel, B is packed into
/// KC x NR slivers, then each MC-row block of A into MR x KC slivers, and a register-tiled micro-kernel
/// multiplies one A sliver by one B sliver into an MR x NR tile of C held entirely in registers. Packing
/// turns every transpose combination into the same contiguous, unit-stride streams, so the micro-kernel
/// never sees lda/ldb or a transpose flag, and zero-pads ragged slivers so edge tiles need no special
/// packing. Threads each take a band of C (see <see cref="ParallelJob"/>); packing buffers are per thread
/// and kept, so steady-state calls allocate nothing.
/// </summary>
internal static unsafe class CpuGemm
{
    /// <summary>Which micro-kernel (and so which tile shape) the packing routines feed.</summary>
    internal enum Kernel
    {
        /// <summary>12 x 32 tile, 24 Vector512 accumulators (of 32 zmm registers).</summary>
        Avx512,
        /// <summary>6 x 16 tile, 12 Vector256 accumulators (of 16 ymm registers).</summary>
        Fma256,
        /// <summary>4 x 8 tile of Vector128: fits 16 xmm registers (SSE) and NEON; also correct unaccelerated.</summary>
        Portable,
    }

    /// <summary>Tile shape and cache blocking for one micro-kernel.</summary>
    private sealed class Config
    {
        public Config(Kernel kernel, int mc = 0, int kc = 0, int nc = 0)
        {
            Kind = kernel;
            switch (kernel)
            {
                case Kernel.Avx512:
                    // Zen 4 splits a zmm FMA into two 256-bit halves, so peak flops equal AVX2's, but 12 x 32
                    // needs half the instructions per flop of 6 x 16 (measured 110 vs 88 GFLOP/s per core at
                    // 1024^3) and its 24 independent chains cover the FMA latency many times over. Per k step
                    // the tile reads 48 B of A and 128 B of B for 24 zmm FMAs (~7 B/cycle), which L2 sustains
                    // easily, so neither sliver has to live in L1 (KC = 256, which keeps the 32 KiB B sliver
                    // in L1, measured 6% slower). KC is instead sized to amortise the C tile's load + store,
                    // once per KC block: 1024 keeps the A block (MC x KC = 192 KiB) plus the B sliver in
                    // flight (KC x NR = 128 KiB) well inside the 1 MiB L2. MC between 48 and 240 made no
                    // measurable difference; NC bounds each thread's B panel (KC x NC = 4 MiB, in L3).
                    MR = 12; NR = 32; KC = 1024; MC = 48; NC = 1024;
                    break;
                case Kernel.Fma256:
                    // Haswell-class shape: 12 accumulators + 2 B vectors + 1 broadcast = 15 of 16 ymm. This
                    // tile needs ~15 B/cycle, so KC is kept where the B sliver (KC x 16 = 24 KiB) fits L1 and
                    // the A block (96 x 384 = 144 KiB) fits even a 256 KiB L2.
                    MR = 6; NR = 16; KC = 384; MC = 96; NC = 2048;
                    break;
                default:
                    // 8 accumulators + 2 B + 1 broadcast = 11 of 16 xmm (SSE) or 32 (NEON).
                    MR = 4; NR = 8; KC = 256; MC = 128; NC = 2048;
                    break;
            }
            if (mc > 0) MC = mc;
            if (kc > 0) KC = kc;
            if (nc > 0) NC = nc;
            // Whole slivers per block, so only the last block of a dimension has a ragged edge.
            MC = Math.Max(MR, MC / MR * MR);
            NC = Math.Max(NR, NC / NR * NR);
        }

        public Kernel Kind { get; }
        public int MR { get; }
        public int NR { get; }
        public int KC { get; }
        public int MC { get; }
        public int NC { get; }
    }

    private static Config s_config = new(DetectKernel());

    /// <summary>
    /// Below this many multiply-adds a call runs on the calling thread. Measured on the 2-core VM: a fork
    /// to a pool worker that is still spinning costs ~1 us, but one that has gone to sleep takes 35-80 us
    /// to wake; 2^21 (128^3, ~40 us on one core) runs 1.75x faster forked back to back and at worst ~20%
    /// slower when the worker has to be woken, and larger calls only gain. Settable so tests can send
    /// small shapes through the threaded path.
    /// </summary>
    internal static long ParallelMinMacs { get; set; } = 1L << 21;

    /// <summary>The micro-kernel the process uses.</summary>
    internal static Kernel ActiveKernel => s_config.Kind;

    /// <summary>Forces a micro-kernel and optionally block sizes (tests run the fallbacks on AVX-512
    /// machines and small blocks on small matrices); the caller must ensure the ISA is supported.</summary>
    internal static void UseKernel(Kernel kernel, int mc = 0, int kc = 0, int nc = 0) => s_config = new Config(kernel, mc, kc, nc);

    /// <summary>The best micro-kernel this machine supports.</summary>
    internal static Kernel DetectKernel() =>
        Avx512F.IsSupported ? Kernel.Avx512 : Fma.IsSupported && Avx.IsSupported ? Kernel.Fma256 : Kernel.Portable;

    /// <summary>
    /// C[i,j] = alpha * sum_p opA[i,p] * opB[p,j] + beta * C[i,j]   (i &lt; m, j &lt; n, p &lt; k), row-major.
    /// opA[i,p] = transA ? a[p*lda + i] : a[i*lda + p];  opB[p,j] = transB ? b[j*ldb + p] : b[p*ldb + j].
    /// beta == 0 ignores C's old contents entirely (even NaN); beta == 1 accumulates. As in BLAS, k == 0 or
    /// alpha == 0 gives C = beta * C without reading A or B. Bit-identical results for a fixed thread count.
    /// </summary>
    public static void Multiply(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        if (m <= 0 || n <= 0) return;
        if (k <= 0 || alpha == 0f)
        {
            ScaleC(m, n, beta, c, ldc);
            return;
        }
        var job = new Job(s_config, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        int threads = CpuParallel.ThreadCount;
        if (threads > 1 && (long)m * n * k >= ParallelMinMacs) ParallelJob.Run(job, threads);
        else job.RunSerial();
    }

    private static void ScaleC(int m, int n, float beta, float* c, int ldc)
    {
        if (beta == 1f) return;
        for (int i = 0; i < m; i++)
        {
            var row = new Span<float>(c + (nint)i * ldc, n);
            if (beta == 0f) row.Clear();
            else System.Numerics.Tensors.TensorPrimitives.Multiply(row, beta, row);
        }
    }

    /// <summary>
    /// The threaded driver: C is cut into one band per thread (whole slivers), and each band runs the
    /// serial blocked algorithm with its thread's own packing buffers. The pool has no barrier and a
    /// worker that has gone to sleep takes 35-80 us to wake on this VM, so one fork per call beats the
    /// GotoBLAS scheme of packing a shared B panel and forking again to compute on it (measured 1.4x
    /// slower at 256^3 and 255x4095x127, equal at 1024^3). Each C element is summed by one thread in a fixed
    /// k order, so results are bit-identical run to run. The price is that every band packs the operand
    /// the bands share; banding the longer side of C duplicates the smaller one (~1.5% of the time at 1024^3).
    /// One instance per calling thread, with its delegate created once, so a forked call allocates nothing.
    /// </summary>
    private sealed class ParallelJob
    {
        [ThreadStatic] private static ParallelJob? t_instance;

        private readonly Action<int> _runPart;
        private Job _job;
        private bool _byRows;
        private int _slivers;
        private int _parts;

        private ParallelJob() => _runPart = RunPart;

        public static void Run(in Job job, int threads)
        {
            var cfg = job.Cfg;
            int mSlivers = (job.M + cfg.MR - 1) / cfg.MR;
            int nSlivers = (job.N + cfg.NR - 1) / cfg.NR;
            double rowBalance = Balance(mSlivers, threads), colBalance = Balance(nSlivers, threads);
            bool byRows = rowBalance > colBalance || (rowBalance == colBalance && job.M >= job.N);
            int slivers = byRows ? mSlivers : nSlivers;
            int parts = Math.Min(threads, slivers);
            if (parts <= 1)
            {
                job.RunSerial();
                return;
            }
            var self = t_instance ??= new ParallelJob();
            self._job = job;
            self._byRows = byRows;
            self._slivers = slivers;
            self._parts = parts;
            CpuParallel.ForEach(parts, self._runPart);
        }

        /// <summary>Band boundaries depend only on the sliver count and the part count.</summary>
        private void RunPart(int part)
        {
            int s0 = (int)((long)_slivers * part / _parts), s1 = (int)((long)_slivers * (part + 1) / _parts);
            var cfg = _job.Cfg;
            if (_byRows) _job.RunSerial(s0 * cfg.MR, Math.Min(s1 * cfg.MR, _job.M), 0, _job.N);
            else _job.RunSerial(0, _job.M, s0 * cfg.NR, Math.Min(s1 * cfg.NR, _job.N));
        }

        /// <summary>Average thread's share of the busiest thread's slivers (1 = even split).</summary>
        private static double Balance(int slivers, int threads)
        {
            int parts = Math.Min(threads, slivers);
            int most = (slivers + parts - 1) / parts;
            return (double)slivers / ((double)most * threads);
        }
    }

    /// <summary>One call's operands plus its k blocking.</summary>
    private readonly struct Job
    {
        private readonly bool _transA, _transB;
        private readonly float* _a, _b, _c;
        private readonly int _lda, _ldb, _ldc;
        private readonly float _alpha;

        public Job(Config cfg, bool transA, bool transB, int m, int n, int k, float alpha,
            float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
        {
            Cfg = cfg;
            _transA = transA;
            _transB = transB;
            M = m;
            N = n;
            K = k;
            _alpha = alpha;
            _a = a;
            _lda = lda;
            _b = b;
            _ldb = ldb;
            Beta = beta;
            _c = c;
            _ldc = ldc;
            // Equal k blocks (k = 1100 runs as 2 x 552, not 1024 + 76), rounded to the transpose width.
            int kBlocks = (k + cfg.KC - 1) / cfg.KC;
            KcStep = Math.Min(cfg.KC, ((k + kBlocks - 1) / kBlocks + 7) & ~7);
        }

        public Config Cfg { get; }
        public int M { get; }
        public int N { get; }
        public int K { get; }
        public float Beta { get; }
        public int KcStep { get; }

        public void PackPanelB(int pc, int kc, int jc, int nc, float* dst) => PackB(_transB, _b, _ldb, pc, kc, jc, nc, Cfg.NR, dst);

        public void PackBlockA(int ic, int mc, int pc, int kc, float* dst) => PackA(_transA, _a, _lda, ic, mc, pc, kc, Cfg.MR, dst);

        /// <summary>Single-threaded: the C block rows [m0, m1) x columns [n0, n1).</summary>
        public void RunSerial() => RunSerial(0, M, 0, N);

        public void RunSerial(int m0, int m1, int n0, int n1)
        {
            var ws = Workspace.For(Cfg);
            for (int jc = n0; jc < n1; jc += Cfg.NC)
            {
                int nc = Math.Min(Cfg.NC, n1 - jc);
                for (int pc = 0; pc < K; pc += KcStep)
                {
                    int kc = Math.Min(KcStep, K - pc);
                    // Later k blocks add onto what the first one wrote.
                    float beta = pc == 0 ? Beta : 1f;
                    PackPanelB(pc, kc, jc, nc, ws.B);
                    for (int ic = m0; ic < m1; ic += Cfg.MC)
                    {
                        int mc = Math.Min(Cfg.MC, m1 - ic);
                        PackBlockA(ic, mc, pc, kc, ws.A);
                        MacroKernel(ws.A, ic, mc, ws.B, jc, 0, nc, kc, beta, ws.Tile);
                    }
                }
            }
        }

        /// <summary>
        /// C[ic .. ic+mc, jc+j0 .. jc+j1] (+)= packed A block x packed B panel columns [j0, j1), j0 a
        /// multiple of NR. The A block stays in L2 while the B slivers stream past it.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void MacroKernel(float* packA, int ic, int mc, float* packB, int jc, int j0, int j1, int kc, float beta, float* tile)
        {
            int mr = Cfg.MR, nr = Cfg.NR;
            var kind = Cfg.Kind;
            for (int jr = j0; jr < j1; jr += nr)
            {
                int cols = Math.Min(nr, j1 - jr);
                float* bs = packB + (nint)jr * kc;
                for (int ir = 0; ir < mc; ir += mr)
                {
                    int rows = Math.Min(mr, mc - ir);
                    float* asl = packA + (nint)ir * kc;
                    float* ct = _c + (nint)(ic + ir) * _ldc + jc + jr;
                    if (kind == Kernel.Avx512)
                    {
                        KernelAvx512(rows, cols, kc, asl, bs, ct, _ldc, _alpha, beta);
                    }
                    else if (rows == mr && cols == nr)
                    {
                        RunKernel(kind, kc, asl, bs, ct, _ldc, _alpha, beta);
                    }
                    else
                    {
                        // Edge tile: the packed slivers are zero-padded, so compute a full tile into
                        // scratch and merge only the valid part.
                        RunKernel(kind, kc, asl, bs, tile, nr, 1f, 0f);
                        MergeTile(tile, nr, rows, cols, ct, _ldc, _alpha, beta);
                    }
                }
            }
        }
    }

    /// <summary>Per-thread packing buffers, allocated once and kept: a steady training loop allocates
    /// nothing. The finalizer frees them when a pool thread (and so its thread-static) goes away.</summary>
    private sealed class Workspace
    {
        [ThreadStatic] private static Workspace? t_current;

        private Workspace(Config cfg)
        {
            Cfg = cfg;
            int mcPad = (cfg.MC + cfg.MR - 1) / cfg.MR * cfg.MR;
            int ncPad = (cfg.NC + cfg.NR - 1) / cfg.NR * cfg.NR;
            A = Alloc((nint)mcPad * cfg.KC);
            B = Alloc((nint)ncPad * cfg.KC);
            Tile = Alloc((nint)cfg.MR * cfg.NR);
        }

        public Config Cfg { get; }
        public float* A { get; }
        public float* B { get; }
        public float* Tile { get; }

        public static Workspace For(Config cfg)
        {
            var ws = t_current;
            if (ws is null || ws.Cfg != cfg)
            {
                ws = new Workspace(cfg);
                t_current = ws;
            }
            return ws;
        }

        // 64-byte alignment: a packed row of B is whole cache lines, so zmm loads never split lines.
        private static float* Alloc(nint floats) => (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);

        ~Workspace()
        {
            NativeMemory.AlignedFree(A);
            NativeMemory.AlignedFree(B);
            NativeMemory.AlignedFree(Tile);
        }
    }

    // ---------------------------------------------------------------- packing

    /// <summary>
    /// Packs opA[i0 .. i0+mc, p0 .. p0+kc] as MR-row slivers, each stored p-major (MR floats per p) so the
    /// micro-kernel reads one contiguous stream; rows past mc are zero so edge tiles need no masks.
    /// </summary>
    private static void PackA(bool transA, float* a, int lda, int i0, int mc, int p0, int kc, int mr, float* dst)
    {
        if (transA)
        {
            PackCopy(a + (nint)p0 * lda + i0, lda, mc, mr, kc, dst);
            return;
        }
        for (int s = 0; s < mc; s += mr, dst += (nint)mr * kc)
            PackTranspose(a + (nint)(i0 + s) * lda + p0, lda, Math.Min(mr, mc - s), mr, kc, dst);
    }

    /// <summary>
    /// Packs opB[p0 .. p0+kc, j0 .. j0+nc] as NR-column slivers, each stored p-major (NR floats per p,
    /// whole cache lines) so the micro-kernel loads NR/16 vectors per p; columns past nc are zero.
    /// </summary>
    private static void PackB(bool transB, float* b, int ldb, int p0, int kc, int j0, int nc, int nr, float* dst)
    {
        if (!transB)
        {
            PackCopy(b + (nint)p0 * ldb + j0, ldb, nc, nr, kc, dst);
            return;
        }
        for (int t = 0; t < nc; t += nr, dst += (nint)nr * kc)
            PackTranspose(b + (nint)(j0 + t) * ldb + p0, ldb, Math.Min(nr, nc - t), nr, kc, dst);
    }

    /// <summary>
    /// Sliver t gets dst[t*width*kc + p*width + r] = src[p*stride + t*width + r] (zero past count): the
    /// operand already runs along the slivers (A transposed, B not). Walking p outermost reads each source
    /// row once, sequentially, and writes to count/width sliver streams; walking a sliver at a time instead
    /// would touch one 128-byte piece of every row (a new page each) and measured 2.4x slower.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackCopy(float* src, nint stride, int count, int width, int kc, float* dst)
    {
        int full = count / width, rest = count - full * width;
        nint sliver = (nint)width * kc;
        bool vector = (width & 3) == 0;
        int wide = Vector256.IsHardwareAccelerated ? width & ~7 : 0;
        for (int p = 0; p < kc; p++, src += stride)
        {
            float* s = src;
            float* d = dst + (nint)p * width;
            for (int t = 0; t < full; t++, s += width, d += sliver)
            {
                if (vector)
                {
                    int r = 0;
                    for (; r < wide; r += 8) Vector256.Store(Vector256.Load(s + r), d + r);
                    for (; r < width; r += 4) Vector128.Store(Vector128.Load(s + r), d + r);
                }
                else
                {
                    for (int r = 0; r < width; r++) d[r] = s[r];
                }
            }
            if (rest > 0)
            {
                int r = 0;
                for (; r < rest; r++) d[r] = s[r];
                for (; r < width; r++) d[r] = 0f;
            }
        }
    }

    /// <summary>dst[p*width + r] = src[r*stride + p] for r &lt; count, 0 beyond: the operand runs across the
    /// sliver (A plain, B transposed), so blocks of 8 (or 4) rows x 8 p are transposed in registers, each
    /// source row is read sequentially, and the sliver is written in whole 32-byte rows. B^T packs as
    /// fast as plain B this way; the scalar gather it replaced was ~1.6x slower.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackTranspose(float* src, nint stride, int count, int width, int kc, float* dst)
    {
        int r = 0;
        if (Avx.IsSupported)
        {
            int kc8 = kc & ~7;
            if ((width & 7) == 0)
            {
                for (; r + 8 <= count; r += 8)
                {
                    float* s0 = src + r * stride;
                    float* d = dst + r;
                    int p = 0;
                    for (; p < kc8; p += 8, d += 8 * (nint)width) Transpose8x8(s0 + p, stride, d, width);
                    for (; p < kc; p++, d += width)
                    {
                        float* sp = s0 + p;
                        for (int i = 0; i < 8; i++) d[i] = sp[i * stride];
                    }
                }
            }
            for (; r + 4 <= count; r += 4)
            {
                float* s0 = src + r * stride, s1 = s0 + stride, s2 = s1 + stride, s3 = s2 + stride;
                float* d = dst + r;
                int p = 0;
                for (; p < kc8; p += 8, d += 8 * (nint)width)
                    Transpose4x8(Vector256.Load(s0 + p), Vector256.Load(s1 + p), Vector256.Load(s2 + p), Vector256.Load(s3 + p), d, width);
                for (; p < kc; p++, d += width)
                {
                    d[0] = s0[p]; d[1] = s1[p]; d[2] = s2[p]; d[3] = s3[p];
                }
            }
        }
        for (; r < count; r++)
        {
            float* s0 = src + r * stride;
            for (int p = 0; p < kc; p++) dst[(nint)p * width + r] = s0[p];
        }
        for (; r < width; r++)
        {
            for (int p = 0; p < kc; p++) dst[(nint)p * width + r] = 0f;
        }
    }

    /// <summary>Eight rows of 8 consecutive p (row i at s + i*stride) become 8 rows of 8 floats at d, d + width, ...</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* s, nint stride, float* d, nint width)
    {
        var r0 = Vector256.Load(s);
        var r1 = Vector256.Load(s + stride);
        var r2 = Vector256.Load(s + 2 * stride);
        var r3 = Vector256.Load(s + 3 * stride);
        var r4 = Vector256.Load(s + 4 * stride);
        var r5 = Vector256.Load(s + 5 * stride);
        var r6 = Vector256.Load(s + 6 * stride);
        var r7 = Vector256.Load(s + 7 * stride);
        FastMath.StoreTransposed8x8(r0, r1, r2, r3, r4, r5, r6, r7, d, width);
    }

    /// <summary>Rows r0..r3 (8 consecutive p each) become 8 groups of 4 floats at d, d + width, ...</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose4x8(Vector256<float> r0, Vector256<float> r1, Vector256<float> r2, Vector256<float> r3, float* d, nint width)
    {
        var t0 = Avx.UnpackLow(r0, r1);   // r0p0 r1p0 r0p1 r1p1 | r0p4 r1p4 r0p5 r1p5
        var t1 = Avx.UnpackHigh(r0, r1);  // r0p2 r1p2 r0p3 r1p3 | r0p6 r1p6 r0p7 r1p7
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var u0 = Avx.Shuffle(t0, t2, 0x44); // p0 | p4
        var u1 = Avx.Shuffle(t0, t2, 0xEE); // p1 | p5
        var u2 = Avx.Shuffle(t1, t3, 0x44); // p2 | p6
        var u3 = Avx.Shuffle(t1, t3, 0xEE); // p3 | p7
        Vector128.Store(u0.GetLower(), d);
        Vector128.Store(u1.GetLower(), d + width);
        Vector128.Store(u2.GetLower(), d + 2 * width);
        Vector128.Store(u3.GetLower(), d + 3 * width);
        Vector128.Store(u0.GetUpper(), d + 4 * width);
        Vector128.Store(u1.GetUpper(), d + 5 * width);
        Vector128.Store(u2.GetUpper(), d + 6 * width);
        Vector128.Store(u3.GetUpper(), d + 7 * width);
    }

    // ---------------------------------------------------------------- micro-kernels

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RunKernel(Kernel kind, int kc, float* a, float* b, float* c, nint ldc, float alpha, float beta)
    {
        switch (kind)
        {
            case Kernel.Fma256: KernelFma256(kc, a, b, c, ldc, alpha, beta); break;
            default: KernelPortable(kc, a, b, c, ldc, alpha, beta); break;
        }
    }

    /// <summary>C tile = alpha * acc (beta 0), alpha * acc + C (beta 1) or alpha * acc + beta * C, fused.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MergeTile(float* tile, int nr, int rows, int cols, float* c, nint ldc, float alpha, float beta)
    {
        for (int r = 0; r < rows; r++)
        {
            float* t = tile + (nint)r * nr;
            float* d = c + r * ldc;
            if (beta == 0f)
            {
                for (int j = 0; j < cols; j++) d[j] = alpha * t[j];
            }
            else if (beta == 1f)
            {
                for (int j = 0; j < cols; j++) d[j] = MathF.FusedMultiplyAdd(alpha, t[j], d[j]);
            }
            else
            {
                for (int j = 0; j < cols; j++) d[j] = MathF.FusedMultiplyAdd(alpha, t[j], beta * d[j]);
            }
        }
    }

    /// <summary>A compile-time count: generic kernels instantiated over value types get the branches on
    /// it folded away by the JIT, so one source yields every edge-tile shape without runtime tests.</summary>
    private interface ICount
    {
        static abstract int Value { get; }
    }

    private readonly struct N1 : ICount { public static int Value => 1; }
    private readonly struct N2 : ICount { public static int Value => 2; }
    private readonly struct N3 : ICount { public static int Value => 3; }
    private readonly struct N4 : ICount { public static int Value => 4; }
    private readonly struct N5 : ICount { public static int Value => 5; }
    private readonly struct N6 : ICount { public static int Value => 6; }
    private readonly struct N7 : ICount { public static int Value => 7; }
    private readonly struct N8 : ICount { public static int Value => 8; }
    private readonly struct N9 : ICount { public static int Value => 9; }
    private readonly struct N10 : ICount { public static int Value => 10; }
    private readonly struct N11 : ICount { public static int Value => 11; }
    private readonly struct N12 : ICount { public static int Value => 12; }

    /// <summary>
    /// AVX-512 tiles of rows x cols, 1 &lt;= rows &lt;= 12, 1 &lt;= cols &lt;= 32: edge tiles run a kernel with
    /// only the rows and vectors they need (a 3-row edge costs 3/12 of a tile, not all of it) and write
    /// straight to C through masked loads and stores, which also never touch memory past the row's end.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelAvx512(int rows, int cols, int kc, float* a, float* b, float* c, nint ldc, float alpha, float beta)
    {
        if (cols > 16)
        {
            switch (rows)
            {
                case 1: KernelAvx512<N1, N2>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 2: KernelAvx512<N2, N2>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 3: KernelAvx512<N3, N2>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 4: KernelAvx512<N4, N2>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 5: KernelAvx512<N5, N2>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 6: KernelAvx512<N6, N2>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 7: KernelAvx512<N7, N2>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 8: KernelAvx512<N8, N2>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 9: KernelAvx512<N9, N2>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 10: KernelAvx512<N10, N2>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 11: KernelAvx512<N11, N2>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 12: KernelAvx512<N12, N2>(kc, a, b, c, ldc, alpha, beta, cols); break;
            }
        }
        else
        {
            switch (rows)
            {
                case 1: KernelAvx512<N1, N1>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 2: KernelAvx512<N2, N1>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 3: KernelAvx512<N3, N1>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 4: KernelAvx512<N4, N1>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 5: KernelAvx512<N5, N1>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 6: KernelAvx512<N6, N1>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 7: KernelAvx512<N7, N1>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 8: KernelAvx512<N8, N1>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 9: KernelAvx512<N9, N1>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 10: KernelAvx512<N10, N1>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 11: KernelAvx512<N11, N1>(kc, a, b, c, ldc, alpha, beta, cols); break;
                case 12: KernelAvx512<N12, N1>(kc, a, b, c, ldc, alpha, beta, cols); break;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store512(float* c, Vector512<float> acc, Vector512<float> alpha, Vector512<float> beta, int mode, Vector512<float> mask, bool full)
    {
        if (full)
        {
            var r = mode == 0 ? acc * alpha
                : mode == 1 ? Avx512F.FusedMultiplyAdd(acc, alpha, Vector512.Load(c))
                : Avx512F.FusedMultiplyAdd(acc, alpha, Vector512.Load(c) * beta);
            Vector512.Store(r, c);
        }
        else
        {
            var r = mode == 0 ? acc * alpha
                : mode == 1 ? Avx512F.FusedMultiplyAdd(acc, alpha, Avx512F.MaskLoad(c, mask, Vector512<float>.Zero))
                : Avx512F.FusedMultiplyAdd(acc, alpha, Avx512F.MaskLoad(c, mask, Vector512<float>.Zero) * beta);
            Avx512F.MaskStore(c, mask, r);
        }
    }

    /// <summary>The 12 x 32 micro-kernel (and its edge variants): packed A is 12 floats per k step, packed
    /// B 32, whatever part of the tile is live.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelAvx512<TRows, TWide>(int kc, float* a, float* b, float* c, nint ldc, float alpha, float beta, int cols)
        where TRows : struct, ICount
        where TWide : struct, ICount
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default, c80 = default, c81 = default;
        Vector512<float> c90 = default, c91 = default, ca0 = default, ca1 = default, cb0 = default, cb1 = default;
        if (Sse.IsSupported)
        {
            // The C tile is read only after kc FMAs per accumulator; fetching it now hides its cache and TLB
            // misses (rows are ldc apart) behind that work.
            float* pc = c;
            for (int r = 0; r < TRows.Value; r++, pc += ldc)
            {
                Sse.Prefetch0(pc);
                if (TWide.Value > 1) Sse.Prefetch0(pc + 31);
            }
        }
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = TWide.Value > 1 ? Vector512.Load(b + 16) : default;
            Vector512<float> av;
            av = Vector512.Create(a[0]);
            c00 = Avx512F.FusedMultiplyAdd(av, b0, c00);
            if (TWide.Value > 1) c01 = Avx512F.FusedMultiplyAdd(av, b1, c01);
            if (TRows.Value > 1)
            {
                av = Vector512.Create(a[1]);
                c10 = Avx512F.FusedMultiplyAdd(av, b0, c10);
                if (TWide.Value > 1) c11 = Avx512F.FusedMultiplyAdd(av, b1, c11);
            }
            if (TRows.Value > 2)
            {
                av = Vector512.Create(a[2]);
                c20 = Avx512F.FusedMultiplyAdd(av, b0, c20);
                if (TWide.Value > 1) c21 = Avx512F.FusedMultiplyAdd(av, b1, c21);
            }
            if (TRows.Value > 3)
            {
                av = Vector512.Create(a[3]);
                c30 = Avx512F.FusedMultiplyAdd(av, b0, c30);
                if (TWide.Value > 1) c31 = Avx512F.FusedMultiplyAdd(av, b1, c31);
            }
            if (TRows.Value > 4)
            {
                av = Vector512.Create(a[4]);
                c40 = Avx512F.FusedMultiplyAdd(av, b0, c40);
                if (TWide.Value > 1) c41 = Avx512F.FusedMultiplyAdd(av, b1, c41);
            }
            if (TRows.Value > 5)
            {
                av = Vector512.Create(a[5]);
                c50 = Avx512F.FusedMultiplyAdd(av, b0, c50);
                if (TWide.Value > 1) c51 = Avx512F.FusedMultiplyAdd(av, b1, c51);
            }
            if (TRows.Value > 6)
            {
                av = Vector512.Create(a[6]);
                c60 = Avx512F.FusedMultiplyAdd(av, b0, c60);
                if (TWide.Value > 1) c61 = Avx512F.FusedMultiplyAdd(av, b1, c61);
            }
            if (TRows.Value > 7)
            {
                av = Vector512.Create(a[7]);
                c70 = Avx512F.FusedMultiplyAdd(av, b0, c70);
                if (TWide.Value > 1) c71 = Avx512F.FusedMultiplyAdd(av, b1, c71);
            }
            if (TRows.Value > 8)
            {
                av = Vector512.Create(a[8]);
                c80 = Avx512F.FusedMultiplyAdd(av, b0, c80);
                if (TWide.Value > 1) c81 = Avx512F.FusedMultiplyAdd(av, b1, c81);
            }
            if (TRows.Value > 9)
            {
                av = Vector512.Create(a[9]);
                c90 = Avx512F.FusedMultiplyAdd(av, b0, c90);
                if (TWide.Value > 1) c91 = Avx512F.FusedMultiplyAdd(av, b1, c91);
            }
            if (TRows.Value > 10)
            {
                av = Vector512.Create(a[10]);
                ca0 = Avx512F.FusedMultiplyAdd(av, b0, ca0);
                if (TWide.Value > 1) ca1 = Avx512F.FusedMultiplyAdd(av, b1, ca1);
            }
            if (TRows.Value > 11)
            {
                av = Vector512.Create(a[11]);
                cb0 = Avx512F.FusedMultiplyAdd(av, b0, cb0);
                if (TWide.Value > 1) cb1 = Avx512F.FusedMultiplyAdd(av, b1, cb1);
            }
            a += 12;
            b += 32;
        }
        int mode = beta == 0f ? 0 : beta == 1f ? 1 : 2;
        var va = Vector512.Create(alpha);
        var vb = Vector512.Create(beta);
        bool full0 = cols >= 16, full1 = cols == 32;
        var m0 = Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(cols)).AsSingle();
        var m1 = Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(cols - 16)).AsSingle();
        Store512(c, c00, va, vb, mode, m0, full0);
        if (TWide.Value > 1) Store512(c + 16, c01, va, vb, mode, m1, full1);
        if (TRows.Value > 1)
        {
            c += ldc;
            Store512(c, c10, va, vb, mode, m0, full0);
            if (TWide.Value > 1) Store512(c + 16, c11, va, vb, mode, m1, full1);
        }
        if (TRows.Value > 2)
        {
            c += ldc;
            Store512(c, c20, va, vb, mode, m0, full0);
            if (TWide.Value > 1) Store512(c + 16, c21, va, vb, mode, m1, full1);
        }
        if (TRows.Value > 3)
        {
            c += ldc;
            Store512(c, c30, va, vb, mode, m0, full0);
            if (TWide.Value > 1) Store512(c + 16, c31, va, vb, mode, m1, full1);
        }
        if (TRows.Value > 4)
        {
            c += ldc;
            Store512(c, c40, va, vb, mode, m0, full0);
            if (TWide.Value > 1) Store512(c + 16, c41, va, vb, mode, m1, full1);
        }
        if (TRows.Value > 5)
        {
            c += ldc;
            Store512(c, c50, va, vb, mode, m0, full0);
            if (TWide.Value > 1) Store512(c + 16, c51, va, vb, mode, m1, full1);
        }
        if (TRows.Value > 6)
        {
            c += ldc;
            Store512(c, c60, va, vb, mode, m0, full0);
            if (TWide.Value > 1) Store512(c + 16, c61, va, vb, mode, m1, full1);
        }
        if (TRows.Value > 7)
        {
            c += ldc;
            Store512(c, c70, va, vb, mode, m0, full0);
            if (TWide.Value > 1) Store512(c + 16, c71, va, vb, mode, m1, full1);
        }
        if (TRows.Value > 8)
        {
            c += ldc;
            Store512(c, c80, va, vb, mode, m0, full0);
            if (TWide.Value > 1) Store512(c + 16, c81, va, vb, mode, m1, full1);
        }
        if (TRows.Value > 9)
        {
            c += ldc;
            Store512(c, c90, va, vb, mode, m0, full0);
            if (TWide.Value > 1) Store512(c + 16, c91, va, vb, mode, m1, full1);
        }
        if (TRows.Value > 10)
        {
            c += ldc;
            Store512(c, ca0, va, vb, mode, m0, full0);
            if (TWide.Value > 1) Store512(c + 16, ca1, va, vb, mode, m1, full1);
        }
        if (TRows.Value > 11)
        {
            c += ldc;
            Store512(c, cb0, va, vb, mode, m0, full0);
            if (TWide.Value > 1) Store512(c + 16, cb1, va, vb, mode, m1, full1);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store256(float* c, Vector256<float> acc, Vector256<float> alpha, Vector256<float> beta, int mode)
    {
        var r = mode == 0 ? acc * alpha
            : mode == 1 ? Fma.MultiplyAdd(acc, alpha, Vector256.Load(c))
            : Fma.MultiplyAdd(acc, alpha, Vector256.Load(c) * beta);
        Vector256.Store(r, c);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelFma256(int kc, float* a, float* b, float* c, nint ldc, float alpha, float beta)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var av = Vector256.Create(a[0]);
            c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Vector256.Create(a[1]);
            c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Vector256.Create(a[2]);
            c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Vector256.Create(a[3]);
            c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Vector256.Create(a[4]);
            c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Vector256.Create(a[5]);
            c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
            a += 6;
            b += 16;
        }
        int mode = beta == 0f ? 0 : beta == 1f ? 1 : 2;
        var va = Vector256.Create(alpha);
        var vb = Vector256.Create(beta);
        Store256(c, c00, va, vb, mode); Store256(c + 8, c01, va, vb, mode); c += ldc;
        Store256(c, c10, va, vb, mode); Store256(c + 8, c11, va, vb, mode); c += ldc;
        Store256(c, c20, va, vb, mode); Store256(c + 8, c21, va, vb, mode); c += ldc;
        Store256(c, c30, va, vb, mode); Store256(c + 8, c31, va, vb, mode); c += ldc;
        Store256(c, c40, va, vb, mode); Store256(c + 8, c41, va, vb, mode); c += ldc;
        Store256(c, c50, va, vb, mode); Store256(c + 8, c51, va, vb, mode);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store128(float* c, Vector128<float> acc, Vector128<float> alpha, Vector128<float> beta, int mode)
    {
        var r = mode == 0 ? acc * alpha
            : mode == 1 ? Vector128.MultiplyAddEstimate(acc, alpha, Vector128.Load(c))
            : Vector128.MultiplyAddEstimate(acc, alpha, Vector128.Load(c) * beta);
        Vector128.Store(r, c);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelPortable(int kc, float* a, float* b, float* c, nint ldc, float alpha, float beta)
    {
        Vector128<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector128<float> c20 = default, c21 = default, c30 = default, c31 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector128.Load(b);
            var b1 = Vector128.Load(b + 4);
            var av = Vector128.Create(a[0]);
            c00 = Vector128.MultiplyAddEstimate(av, b0, c00); c01 = Vector128.MultiplyAddEstimate(av, b1, c01);
            av = Vector128.Create(a[1]);
            c10 = Vector128.MultiplyAddEstimate(av, b0, c10); c11 = Vector128.MultiplyAddEstimate(av, b1, c11);
            av = Vector128.Create(a[2]);
            c20 = Vector128.MultiplyAddEstimate(av, b0, c20); c21 = Vector128.MultiplyAddEstimate(av, b1, c21);
            av = Vector128.Create(a[3]);
            c30 = Vector128.MultiplyAddEstimate(av, b0, c30); c31 = Vector128.MultiplyAddEstimate(av, b1, c31);
            a += 4;
            b += 8;
        }
        int mode = beta == 0f ? 0 : beta == 1f ? 1 : 2;
        var va = Vector128.Create(alpha);
        var vb = Vector128.Create(beta);
        Store128(c, c00, va, vb, mode); Store128(c + 4, c01, va, vb, mode); c += ldc;
        Store128(c, c10, va, vb, mode); Store128(c + 4, c11, va, vb, mode); c += ldc;
        Store128(c, c20, va, vb, mode); Store128(c + 4, c21, va, vb, mode); c += ldc;
        Store128(c, c30, va, vb, mode); Store128(c + 4, c31, va, vb, mode);
    }
}

namespace OR1.Native.Cpu;

internal static unsafe partial class CpuGemm
{
    /// <summary>One call's operands plus its k blocking, and the serial blocked loops over them.</summary>
    private readonly struct BlockedProduct
    {
        private readonly bool _transA, _transB;
        private readonly float* _a, _b, _c;
        private readonly int _lda, _ldb, _ldc;
        private readonly float _alpha;
        private readonly float* _packedB; // B packed whole ([sliver][K][NR]), or null: packed per block

        public BlockedProduct(Blocking blocking, bool transA, bool transB, int m, int n, int k, float alpha,
            float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, float* packedB = null)
        {
            _packedB = packedB;
            Blocking = blocking;
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
            int kBlocks = (k + blocking.KC - 1) / blocking.KC;
            KcStep = Math.Min(blocking.KC, ((k + kBlocks - 1) / kBlocks + 7) & ~7);
        }

        public Blocking Blocking { get; }
        public int M { get; }
        public int N { get; }
        public int K { get; }
        public float Beta { get; }
        public int KcStep { get; }

        /// <summary>Single-threaded: the whole of C.</summary>
        public void RunSerial() => RunSerial(0, M, 0, N);

        /// <summary>Single-threaded: the C block rows [m0, m1) x columns [n0, n1). Each packed A block
        /// stays in L2 while the B panel's slivers stream past it.</summary>
        public void RunSerial(int m0, int m1, int n0, int n1)
        {
            var blocking = Blocking;
            var ws = Workspace.For(blocking);
            int mr = blocking.MR, nr = blocking.NR;
            // With B packed ahead (frozen weights: the rollout engine's products of a few dozen rows), the AVX-512 kernel
            // reads a row-major A where it is. Packing it cost as much as the product for the narrow projections (two
            // B slivers per packed block at 64 columns) and was repeated per NC panel and per thread for the LM head.
            // The kernel sums each element's k steps in the same order either way, so the bits do not change.
            bool readAInPlace = _packedB != null && !_transA && blocking.Kind == Kernel.Avx512;
            for (int jc = n0; jc < n1; jc += blocking.NC)
            {
                int nc = Math.Min(blocking.NC, n1 - jc);
                for (int pc = 0; pc < K; pc += KcStep)
                {
                    int kc = Math.Min(KcStep, K - pc);
                    // Later k blocks add onto what the first one wrote.
                    float beta = pc == 0 ? Beta : 1f;
                    var bSlivers = _packedB != null
                        ? new Slivers(_packedB + (nint)(jc / nr) * K * nr + (nint)pc * nr, (nint)nr * K, nr)
                        : new Slivers(ws.B, (nint)nr * kc, nr);
                    if (_packedB == null) PackB(_transB, _b, _ldb, pc, kc, jc, nc, nr, ws.B);
                    for (int ic = m0; ic < m1; ic += blocking.MC)
                    {
                        int mc = Math.Min(blocking.MC, m1 - ic);
                        if (!readAInPlace) PackA(_transA, _a, _lda, ic, mc, pc, kc, mr, ws.A);
                        var aSlivers = readAInPlace
                            ? new Slivers(_a + (nint)ic * _lda + pc, (nint)mr * _lda, 1, _lda)
                            : new Slivers(ws.A, (nint)mr * kc, mr);
                        MultiplyTiles(blocking, mc, nc, kc, aSlivers, bSlivers,
                            _c + (nint)ic * _ldc + jc, _ldc, _alpha, beta, inPlace: false, accumulateInOrder: false, ws);
                    }
                }
            }
        }
    }
}

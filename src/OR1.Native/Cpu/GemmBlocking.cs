namespace OR1.Native.Cpu;

internal static partial class CpuGemm
{
    /// <summary>Tile shape and cache blocking for one micro-kernel.</summary>
    private sealed class Blocking
    {
        public Blocking(Kernel kernel, int mc = 0, int kc = 0, int nc = 0)
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
}

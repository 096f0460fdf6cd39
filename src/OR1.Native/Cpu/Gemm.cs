using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

/// <summary>
/// Single-precision GEMM in the GotoBLAS/BLIS shape: for each NC-column, KC-deep panel, B is packed into
/// KC x NR slivers, then each MC-row block of A into MR x KC slivers, and a register-tiled micro-kernel
/// multiplies one A sliver by one B sliver into an MR x NR tile of C held entirely in registers. Packing
/// turns every transpose combination into the same unit-stride streams, so the micro-kernel never sees a
/// transpose flag, and zero-pads ragged slivers so edge tiles need no special packing. Threads each take
/// a band of C (see <see cref="ParallelJob"/>); packing buffers are per thread and kept, so steady-state
/// calls allocate nothing.
/// </summary>
/// <remarks>
/// One concept per file: this one holds the entry points and the process-wide settings;
/// GemmBlocking.cs the tile shapes and cache blocks, GemmParallel.cs the threaded driver,
/// GemmBlockedProduct.cs the serial blocked loops, GemmTiles.cs the loop over register tiles (shared with
/// <see cref="MultiplyStrided"/>, GemmStrided.cs), GemmPacking.cs the packing, GemmWorkspace.cs the
/// per-thread buffers, and GemmMicroKernelAvx512.cs and GemmMicroKernelFixedTile.cs the micro-kernels.
/// </remarks>
internal static unsafe partial class CpuGemm
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

    private static Blocking s_blocking = new(DetectKernel());

    /// <summary>
    /// Below this many multiply-adds a call runs on the calling thread. Measured on the 2-core VM: a fork
    /// to a pool worker that is still spinning costs ~1 us, but one that has gone to sleep takes 35-80 us
    /// to wake; 2^21 (128^3, ~40 us on one core) runs 1.75x faster forked back to back and at worst ~20%
    /// slower when the worker has to be woken, and larger calls only gain. Settable so tests can send
    /// small shapes through the threaded path.
    /// </summary>
    internal static long ParallelMinMacs { get; set; } = 1L << 21;

    /// <summary>The micro-kernel the process uses.</summary>
    internal static Kernel ActiveKernel => s_blocking.Kind;

    /// <summary>Forces a micro-kernel and optionally block sizes (tests run the fallbacks on AVX-512
    /// machines and small blocks on small matrices); the caller must ensure the ISA is supported.</summary>
    internal static void UseKernel(Kernel kernel, int mc = 0, int kc = 0, int nc = 0) => s_blocking = new Blocking(kernel, mc, kc, nc);

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
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, PackedOperand? packedB = null)
    {
        if (m <= 0 || n <= 0) return;
        if (k <= 0 || alpha == 0f)
        {
            ScaleC(m, n, beta, c, ldc);
            return;
        }
        // A packed copy of B serves only the very operand it was packed from, for the kernel in use.
        float* packed = packedB is not null && packedB.Matches(transB, n, k, b, ldb) ? packedB.Data : null;
        var product = new BlockedProduct(s_blocking, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, packed);
        int threads = CpuParallel.ThreadCount;
        if (threads > 1 && (long)m * n * k >= ParallelMinMacs) ParallelJob.Run(product, threads);
        else product.RunSerial();
    }

    private static void ScaleC(int m, int n, float beta, float* c, nint ldc)
    {
        if (beta == 1f) return;
        for (int i = 0; i < m; i++)
        {
            var row = new Span<float>(c + i * ldc, n);
            if (beta == 0f) row.Clear();
            else System.Numerics.Tensors.TensorPrimitives.Multiply(row, beta, row);
        }
    }
}

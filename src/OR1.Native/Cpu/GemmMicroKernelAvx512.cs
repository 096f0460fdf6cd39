using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

internal static unsafe partial class CpuGemm
{
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

    /// <summary>How the micro-kernel reads the last B vector of a tile, chosen at JIT time like <see cref="ICount"/>.</summary>
    private interface ILastBVector
    {
        /// <summary>True: under the column mask, because B's rows may end where memory does.</summary>
        static abstract bool Masked { get; }
    }

    /// <summary>Whole vectors: packed slivers are zero-padded to NR, and full tiles have nothing to mask.</summary>
    private readonly struct WholeLastB : ILastBVector { public static bool Masked => false; }

    /// <summary>Masked: a ragged edge of B read in place.</summary>
    private readonly struct MaskedLastB : ILastBVector { public static bool Masked => true; }

    /// <summary>How A lies, chosen at JIT time like <see cref="ICount"/>.</summary>
    private interface IALayout
    {
        /// <summary>False: a k step's tile rows are adjacent floats, steps aStep apart (packed slivers, or A
        /// transposed in place). True: rows aRow apart, steps adjacent (A read row by row in place).</summary>
        static abstract bool RowMajor { get; }
    }

    private readonly struct StepMajorA : IALayout { public static bool RowMajor => false; }

    private readonly struct RowMajorA : IALayout { public static bool RowMajor => true; }

    /// <summary>Where the accumulators start, chosen at JIT time like <see cref="ICount"/>.</summary>
    private interface IAccumulatorStart
    {
        /// <summary>True: from C, stored back as they are (alpha 1 and beta 1 only), so each element of C
        /// adds its k terms onto its old value one by one, in order.</summary>
        static abstract bool FromC { get; }
    }

    /// <summary>From zero, merged into C as alpha * acc + beta * C after the k loop.</summary>
    private readonly struct StartFromZero : IAccumulatorStart { public static bool FromC => false; }

    private readonly struct StartFromC : IAccumulatorStart { public static bool FromC => true; }

    /// <summary>
    /// AVX-512 tiles of rows x cols, 1 &lt;= rows &lt;= 12, 1 &lt;= cols &lt;= 32: edge tiles run a kernel with
    /// only the rows and vectors they need (a 3-row edge costs 3/12 of a tile, not all of it) and write
    /// straight to C through masked loads and stores, which also never touch memory past the row's end.
    /// rowMajorA reads A row by row (element (r, p) at a[r * aRow + p]) instead of a step at a time
    /// (a[p * aStep + r]); maskLastB reads a ragged last B vector under the same mask (B read in place, not
    /// packed); startFromC (alpha 1, beta 1) accumulates onto C in order, see <see cref="IAccumulatorStart"/>.
    /// </summary>
    /// <remarks>Fully optimised from the first call, like the kernels: a tier-0 dispatcher (no inlining of the
    /// picks below) would add calls to every tile until tiering caught up.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelAvx512(int rows, int cols, int kc, float* a, nint aRow, nint aStep, float* b, nint bStep,
        float* c, nint ldc, float alpha, float beta, bool rowMajorA, bool maskLastB, bool startFromC)
    {
        if (rowMajorA) Avx512PickStart<RowMajorA>(rows, cols, kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, maskLastB, startFromC);
        else Avx512PickStart<StepMajorA>(rows, cols, kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, maskLastB, startFromC);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx512PickStart<TA>(int rows, int cols, int kc, float* a, nint aRow, nint aStep, float* b, nint bStep,
        float* c, nint ldc, float alpha, float beta, bool maskLastB, bool startFromC) where TA : struct, IALayout
    {
        if (startFromC) Avx512PickLastB<TA, StartFromC>(rows, cols, kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, maskLastB);
        else Avx512PickLastB<TA, StartFromZero>(rows, cols, kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, maskLastB);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx512PickLastB<TA, TStart>(int rows, int cols, int kc, float* a, nint aRow, nint aStep, float* b, nint bStep,
        float* c, nint ldc, float alpha, float beta, bool maskLastB) where TA : struct, IALayout where TStart : struct, IAccumulatorStart
    {
        if (maskLastB && (cols & 15) != 0) Avx512PickWidth<TA, MaskedLastB, TStart>(rows, cols, kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta);
        else Avx512PickWidth<TA, WholeLastB, TStart>(rows, cols, kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx512PickWidth<TA, TLastB, TStart>(int rows, int cols, int kc, float* a, nint aRow, nint aStep, float* b, nint bStep,
        float* c, nint ldc, float alpha, float beta)
        where TA : struct, IALayout where TLastB : struct, ILastBVector where TStart : struct, IAccumulatorStart
    {
        if (cols > 16) Avx512PickRows<TA, N2, TLastB, TStart>(rows, cols, kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta);
        else Avx512PickRows<TA, N1, TLastB, TStart>(rows, cols, kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx512PickRows<TA, TWide, TLastB, TStart>(int rows, int cols, int kc, float* a, nint aRow, nint aStep, float* b, nint bStep,
        float* c, nint ldc, float alpha, float beta)
        where TA : struct, IALayout where TWide : struct, ICount where TLastB : struct, ILastBVector where TStart : struct, IAccumulatorStart
    {
        switch (rows)
        {
            case 1: KernelAvx512<TA, N1, TWide, TLastB, TStart>(kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, cols); break;
            case 2: KernelAvx512<TA, N2, TWide, TLastB, TStart>(kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, cols); break;
            case 3: KernelAvx512<TA, N3, TWide, TLastB, TStart>(kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, cols); break;
            case 4: KernelAvx512<TA, N4, TWide, TLastB, TStart>(kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, cols); break;
            case 5: KernelAvx512<TA, N5, TWide, TLastB, TStart>(kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, cols); break;
            case 6: KernelAvx512<TA, N6, TWide, TLastB, TStart>(kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, cols); break;
            case 7: KernelAvx512<TA, N7, TWide, TLastB, TStart>(kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, cols); break;
            case 8: KernelAvx512<TA, N8, TWide, TLastB, TStart>(kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, cols); break;
            case 9: KernelAvx512<TA, N9, TWide, TLastB, TStart>(kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, cols); break;
            case 10: KernelAvx512<TA, N10, TWide, TLastB, TStart>(kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, cols); break;
            case 11: KernelAvx512<TA, N11, TWide, TLastB, TStart>(kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, cols); break;
            case 12: KernelAvx512<TA, N12, TWide, TLastB, TStart>(kc, a, aRow, aStep, b, bStep, c, ldc, alpha, beta, cols); break;
        }
    }

    /// <summary>Row r of A at the current k step: a[r] step-major; row-major, rows 0-3, 4-7 and 8-11 from
    /// a, a4 and a8 at row offsets 0, r1, r2 and r3 (r is a constant, so the choice folds away).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ElementOfA<TA>(float* a, float* a4, float* a8, nint r1, nint r2, nint r3, int r) where TA : struct, IALayout
    {
        if (!TA.RowMajor) return a[r];
        return r switch
        {
            0 => a[0], 1 => a[r1], 2 => a[r2], 3 => a[r3],
            4 => a4[0], 5 => a4[r1], 6 => a4[r2], 7 => a4[r3],
            8 => a8[0], 9 => a8[r1], 10 => a8[r2], _ => a8[r3],
        };
    }

    /// <summary>Lanes below cols (none when cols &lt;= 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> ColumnMask(int cols) => Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(cols)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Load512(float* c, Vector512<float> mask, bool full) =>
        full ? Vector512.Load(c) : Avx512F.MaskLoad(c, mask, Vector512<float>.Zero);

    /// <summary>Mode 0: C = alpha acc; 1: C = alpha acc + C; 2: C = alpha acc + beta C, fused. Masked past the
    /// row's last column unless full.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store512(float* c, Vector512<float> acc, Vector512<float> alpha, Vector512<float> beta, int mode, Vector512<float> mask, bool full)
    {
        var r = mode == 0 ? acc * alpha
            : mode == 1 ? Avx512F.FusedMultiplyAdd(acc, alpha, Load512(c, mask, full))
            : Avx512F.FusedMultiplyAdd(acc, alpha, Load512(c, mask, full) * beta);
        if (full) Vector512.Store(r, c);
        else Avx512F.MaskStore(c, mask, r);
    }

    /// <summary>The 12 x 32 micro-kernel (and its edge variants): A gives 12 floats per k step (one per
    /// row), B 32 (one per column), whatever part of the tile is live; aStep and bStep are the strides
    /// between k steps (12 and 32 when packed), aRow the stride between A's rows when it is row-major.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelAvx512<TA, TRows, TWide, TLastB, TStart>(int kc, float* a, nint aRow, nint aStep, float* b, nint bStep,
        float* c, nint ldc, float alpha, float beta, int cols)
        where TA : struct, IALayout
        where TRows : struct, ICount
        where TWide : struct, ICount
        where TLastB : struct, ILastBVector
        where TStart : struct, IAccumulatorStart
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default, c80 = default, c81 = default;
        Vector512<float> c90 = default, c91 = default, ca0 = default, ca1 = default, cb0 = default, cb1 = default;
        if (TStart.FromC)
        {
            bool whole0 = cols >= 16, whole1 = cols == 32;
            var mask0 = ColumnMask(cols);
            var mask1 = ColumnMask(cols - 16);
            float* pc = c;
            c00 = Load512(pc, mask0, whole0); if (TWide.Value > 1) c01 = Load512(pc + 16, mask1, whole1);
            if (TRows.Value > 1) { pc += ldc; c10 = Load512(pc, mask0, whole0); if (TWide.Value > 1) c11 = Load512(pc + 16, mask1, whole1); }
            if (TRows.Value > 2) { pc += ldc; c20 = Load512(pc, mask0, whole0); if (TWide.Value > 1) c21 = Load512(pc + 16, mask1, whole1); }
            if (TRows.Value > 3) { pc += ldc; c30 = Load512(pc, mask0, whole0); if (TWide.Value > 1) c31 = Load512(pc + 16, mask1, whole1); }
            if (TRows.Value > 4) { pc += ldc; c40 = Load512(pc, mask0, whole0); if (TWide.Value > 1) c41 = Load512(pc + 16, mask1, whole1); }
            if (TRows.Value > 5) { pc += ldc; c50 = Load512(pc, mask0, whole0); if (TWide.Value > 1) c51 = Load512(pc + 16, mask1, whole1); }
            if (TRows.Value > 6) { pc += ldc; c60 = Load512(pc, mask0, whole0); if (TWide.Value > 1) c61 = Load512(pc + 16, mask1, whole1); }
            if (TRows.Value > 7) { pc += ldc; c70 = Load512(pc, mask0, whole0); if (TWide.Value > 1) c71 = Load512(pc + 16, mask1, whole1); }
            if (TRows.Value > 8) { pc += ldc; c80 = Load512(pc, mask0, whole0); if (TWide.Value > 1) c81 = Load512(pc + 16, mask1, whole1); }
            if (TRows.Value > 9) { pc += ldc; c90 = Load512(pc, mask0, whole0); if (TWide.Value > 1) c91 = Load512(pc + 16, mask1, whole1); }
            if (TRows.Value > 10) { pc += ldc; ca0 = Load512(pc, mask0, whole0); if (TWide.Value > 1) ca1 = Load512(pc + 16, mask1, whole1); }
            if (TRows.Value > 11) { pc += ldc; cb0 = Load512(pc, mask0, whole0); if (TWide.Value > 1) cb1 = Load512(pc + 16, mask1, whole1); }
        }
        else if (Sse.IsSupported)
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
        var lastMask = TLastB.Masked ? ColumnMask(TWide.Value > 1 ? cols - 16 : cols) : default;
        // Row-major A: rows 0-3, 4-7 and 8-11 from three pointers and three row offsets, which x86 addressing
        // scales for free, so the twelve rows need no per-row pointer to advance.
        float* a4 = a, a8 = a;
        nint r1 = 0, r2 = 0, r3 = 0;
        if (TA.RowMajor)
        {
            r1 = aRow;
            r2 = 2 * aRow;
            r3 = 3 * aRow;
            a4 = a + 4 * aRow;
            a8 = a + 8 * aRow;
        }
        for (int p = 0; p < kc; p++)
        {
            var b0 = TLastB.Masked && TWide.Value == 1 ? Avx512F.MaskLoad(b, lastMask, Vector512<float>.Zero) : Vector512.Load(b);
            var b1 = TWide.Value == 1 ? default
                : TLastB.Masked ? Avx512F.MaskLoad(b + 16, lastMask, Vector512<float>.Zero) : Vector512.Load(b + 16);
            Vector512<float> av;
            av = Vector512.Create(ElementOfA<TA>(a, a4, a8, r1, r2, r3, 0));
            c00 = Avx512F.FusedMultiplyAdd(av, b0, c00);
            if (TWide.Value > 1) c01 = Avx512F.FusedMultiplyAdd(av, b1, c01);
            if (TRows.Value > 1)
            {
                av = Vector512.Create(ElementOfA<TA>(a, a4, a8, r1, r2, r3, 1));
                c10 = Avx512F.FusedMultiplyAdd(av, b0, c10);
                if (TWide.Value > 1) c11 = Avx512F.FusedMultiplyAdd(av, b1, c11);
            }
            if (TRows.Value > 2)
            {
                av = Vector512.Create(ElementOfA<TA>(a, a4, a8, r1, r2, r3, 2));
                c20 = Avx512F.FusedMultiplyAdd(av, b0, c20);
                if (TWide.Value > 1) c21 = Avx512F.FusedMultiplyAdd(av, b1, c21);
            }
            if (TRows.Value > 3)
            {
                av = Vector512.Create(ElementOfA<TA>(a, a4, a8, r1, r2, r3, 3));
                c30 = Avx512F.FusedMultiplyAdd(av, b0, c30);
                if (TWide.Value > 1) c31 = Avx512F.FusedMultiplyAdd(av, b1, c31);
            }
            if (TRows.Value > 4)
            {
                av = Vector512.Create(ElementOfA<TA>(a, a4, a8, r1, r2, r3, 4));
                c40 = Avx512F.FusedMultiplyAdd(av, b0, c40);
                if (TWide.Value > 1) c41 = Avx512F.FusedMultiplyAdd(av, b1, c41);
            }
            if (TRows.Value > 5)
            {
                av = Vector512.Create(ElementOfA<TA>(a, a4, a8, r1, r2, r3, 5));
                c50 = Avx512F.FusedMultiplyAdd(av, b0, c50);
                if (TWide.Value > 1) c51 = Avx512F.FusedMultiplyAdd(av, b1, c51);
            }
            if (TRows.Value > 6)
            {
                av = Vector512.Create(ElementOfA<TA>(a, a4, a8, r1, r2, r3, 6));
                c60 = Avx512F.FusedMultiplyAdd(av, b0, c60);
                if (TWide.Value > 1) c61 = Avx512F.FusedMultiplyAdd(av, b1, c61);
            }
            if (TRows.Value > 7)
            {
                av = Vector512.Create(ElementOfA<TA>(a, a4, a8, r1, r2, r3, 7));
                c70 = Avx512F.FusedMultiplyAdd(av, b0, c70);
                if (TWide.Value > 1) c71 = Avx512F.FusedMultiplyAdd(av, b1, c71);
            }
            if (TRows.Value > 8)
            {
                av = Vector512.Create(ElementOfA<TA>(a, a4, a8, r1, r2, r3, 8));
                c80 = Avx512F.FusedMultiplyAdd(av, b0, c80);
                if (TWide.Value > 1) c81 = Avx512F.FusedMultiplyAdd(av, b1, c81);
            }
            if (TRows.Value > 9)
            {
                av = Vector512.Create(ElementOfA<TA>(a, a4, a8, r1, r2, r3, 9));
                c90 = Avx512F.FusedMultiplyAdd(av, b0, c90);
                if (TWide.Value > 1) c91 = Avx512F.FusedMultiplyAdd(av, b1, c91);
            }
            if (TRows.Value > 10)
            {
                av = Vector512.Create(ElementOfA<TA>(a, a4, a8, r1, r2, r3, 10));
                ca0 = Avx512F.FusedMultiplyAdd(av, b0, ca0);
                if (TWide.Value > 1) ca1 = Avx512F.FusedMultiplyAdd(av, b1, ca1);
            }
            if (TRows.Value > 11)
            {
                av = Vector512.Create(ElementOfA<TA>(a, a4, a8, r1, r2, r3, 11));
                cb0 = Avx512F.FusedMultiplyAdd(av, b0, cb0);
                if (TWide.Value > 1) cb1 = Avx512F.FusedMultiplyAdd(av, b1, cb1);
            }
            if (TA.RowMajor)
            {
                a++;
                a4++;
                a8++;
            }
            else
            {
                a += aStep;
            }
            b += bStep;
        }
        // Accumulators that started from C are C's new values as they stand.
        int mode = TStart.FromC || beta == 0f ? 0 : beta == 1f ? 1 : 2;
        var va = TStart.FromC ? Vector512<float>.One : Vector512.Create(alpha);
        var vb = Vector512.Create(beta);
        bool full0 = cols >= 16, full1 = cols == 32;
        var m0 = ColumnMask(cols);
        var m1 = ColumnMask(cols - 16);
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
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

internal static unsafe partial class CpuGemm
{
    /// <summary>The fixed-shape micro-kernels of machines without AVX-512 compute one whole MR x NR tile from
    /// packed slivers (edge tiles go through a scratch tile, <see cref="MergeTile"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RunFixedTileKernel(Kernel kind, int kc, float* a, float* b, float* c, nint ldc, float alpha, float beta)
    {
        switch (kind)
        {
            case Kernel.Fma256: KernelFma256(kc, a, b, c, ldc, alpha, beta); break;
            default: KernelPortable(kc, a, b, c, ldc, alpha, beta); break;
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

using System.Runtime.InteropServices;

namespace OR1.Bench.Baselines;

/// <summary>
/// The system OpenBLAS (Debian's libopenblas0, pthread build) as the reference the Cpu GEMM is
/// measured against. Only the two entry points the benchmarks need are bound.
/// </summary>
internal static unsafe partial class OpenBlas
{
    private const string Library = "libopenblas.so.0";

    public const int RowMajor = 101;
    public const int NoTrans = 111;
    public const int Trans = 112;

    /// <summary>Why OpenBLAS cannot be used, for the benchmark's error message.</summary>
    public const string MissingMessage =
        "OpenBLAS (" + Library + ") was not found; install it with `apt-get install libopenblas0` " +
        "(Debian/Ubuntu) to run the OpenBLAS baseline.";

    private static readonly Lazy<bool> s_available = new(() =>
    {
        if (!NativeLibrary.TryLoad(Library, out var handle)) return false;
        NativeLibrary.Free(handle);
        return true;
    });

    /// <summary>True when libopenblas.so.0 can be loaded.</summary>
    public static bool IsAvailable => s_available.Value;

    /// <summary>Throws with an install hint when the library is missing.</summary>
    public static void EnsureAvailable()
    {
        if (!IsAvailable) throw new DllNotFoundException(MissingMessage);
    }

    /// <summary>CBLAS sgemm (LP64: blasint is int, as in Debian's libopenblas0).</summary>
    [LibraryImport(Library, EntryPoint = "cblas_sgemm")]
    public static partial void Sgemm(int order, int transA, int transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);

    /// <summary>Threads OpenBLAS uses for subsequent calls.</summary>
    [LibraryImport(Library, EntryPoint = "openblas_set_num_threads")]
    public static partial void SetNumThreads(int threads);

    /// <summary>Row-major sgemm with bool transposes, mirroring CpuGemm.Multiply's signature.</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc) =>
        Sgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

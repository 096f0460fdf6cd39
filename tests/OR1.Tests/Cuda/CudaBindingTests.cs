using OR1.Native;
using OR1.Native.Cuda;
using OR1.Tests.Support;

namespace OR1.Tests.Cuda;

/// <summary>
/// The parts of the Cuda backend that need no GPU: status-name tables, the typed "unavailable" error,
/// the row-major to column-major GEMM mapping (against a column-major reference of what cuBLAS
/// computes), and NVRTC compiling every kernel source for sm_80 and sm_90 (where NVRTC is installed;
/// CI installs it and sets OR1_REQUIRE_NVRTC=1).
/// </summary>
[TestFixture]
public sealed partial class CudaBindingTests
{
    [Test]
    public void StatusCodesHaveTheirNames()
    {
        Assert.Multiple(() =>
        {
            Assert.That(CudaErrors.DriverName(0), Is.EqualTo("CUDA_SUCCESS"));
            Assert.That(CudaErrors.DriverName(2), Is.EqualTo("CUDA_ERROR_OUT_OF_MEMORY"));
            Assert.That(CudaErrors.DriverName(100), Is.EqualTo("CUDA_ERROR_NO_DEVICE"));
            Assert.That(CudaErrors.DriverName(218), Is.EqualTo("CUDA_ERROR_INVALID_PTX"));
            Assert.That(CudaErrors.DriverName(700), Is.EqualTo("CUDA_ERROR_ILLEGAL_ADDRESS"));
            Assert.That(CudaErrors.DriverName(719), Is.EqualTo("CUDA_ERROR_LAUNCH_FAILED"));
            Assert.That(CudaErrors.DriverName(12345), Is.EqualTo("CUresult 12345"));
            Assert.That(CudaErrors.NvrtcName(6), Is.EqualTo("NVRTC_ERROR_COMPILATION"));
            Assert.That(CudaErrors.NvrtcName(-1), Is.EqualTo("nvrtcResult -1"));
            Assert.That(CudaErrors.CublasName(13), Is.EqualTo("CUBLAS_STATUS_EXECUTION_FAILED"));
            Assert.That(CudaErrors.CublasName(7), Is.EqualTo("CUBLAS_STATUS_INVALID_VALUE"));
        });
    }

    [Test]
    public void LibraryVersionsReadAsTheirHeadersEncodeThem()
    {
        Assert.That(CudaLibraryVersions.FormatDriver(12040), Is.EqualTo("12.4"), "CUDA_VERSION: 1000 * major + 10 * minor");
        Assert.That(CudaLibraryVersions.FormatDriver(11080), Is.EqualTo("11.8"));
        Assert.That(CudaLibraryVersions.FormatCublas(111103), Is.EqualTo("11.11.3"), "CUBLAS_VERSION: 10000 * major + 100 * minor + patch");
        Assert.That(CudaLibraryVersions.FormatCublas(120405), Is.EqualTo("12.4.5"));
        // Without a GPU too: each library either answers with a version or is reported missing, never throws.
        var probed = CudaLibraryVersions.Probe();
        Assert.That(new[] { probed.Driver, probed.Nvrtc }, Has.All.Null.Or.Match(@"^\d+\.\d+$"));
        Assert.That(probed.Cublas, Is.Null.Or.Match(@"^\d+\.\d+\.\d+$"));
    }

    [Test]
    public void AFailedCallBecomesAnExceptionWithCallAndName()
    {
        var e = Assert.Throws<CudaException>(() => CudaErrors.Driver(700, "cuStreamSynchronize"))!;
        Assert.That(e.Message, Does.Contain("cuStreamSynchronize").And.Contain("CUDA_ERROR_ILLEGAL_ADDRESS").And.Contain("700"));
        Assert.That(e.Code, Is.EqualTo(700));
        Assert.That(e.Library, Is.EqualTo("driver"));
        var n = Assert.Throws<CudaException>(() => CudaErrors.Nvrtc(6, "nvrtcCompileProgram", "attention.cu(3): error: x"))!;
        Assert.That(n.Message, Does.Contain("NVRTC_ERROR_COMPILATION").And.Contain("attention.cu(3)"));
        Assert.DoesNotThrow(() => CudaErrors.Cublas(0, "cublasSgemm"));
    }

    /// <summary>Without a GPU (or driver), opening the backend is the typed error that names the cause; with one, it opens.</summary>
    [Test]
    public void OpeningTheBackendEitherWorksOrSaysWhyNot()
    {
        if (CudaBackend.TryProbe(out string reason))
        {
            Assert.That(reason, Does.StartWith("Cuda (").And.Contain("sm_"));
            return;
        }
        var e = Assert.Throws<BackendUnavailableException>(() => new CudaBackend())!;
        Assert.That(e.Backend, Is.EqualTo(BackendKind.Cuda));
        Assert.That(e.Message, Does.Contain("no CUDA driver").Or.Contain("no CUDA device").Or.Contain("did not initialise").Or.Contain("compute capability"));
        Assert.That(reason, Is.EqualTo(e.Message));
    }

    [Test]
    public void ARequestedDeviceBeyondTheCountIsUnavailableNotACrash()
    {
        if (CudaBackend.TryProbe(out _))
        {
            var e = Assert.Throws<BackendUnavailableException>(() => new CudaBackend(device: 1000))!;
            Assert.That(e.Message, Does.Contain("device 1000 was requested"));
        }
        else
        {
            Assert.Throws<BackendUnavailableException>(() => new CudaBackend(device: 1000));
        }
    }

    /// <summary>
    /// Column-major GEMM exactly as cuBLAS defines it: C[i + j ldc] = alpha sum_p op(A)[i, p] op(B)[p, j] + beta C,
    /// with op(X)[i, p] = X[i + p ldx] (N) or X[p + i ldx] (T).
    /// </summary>
    private static void ColumnMajorSgemm(int transA, int transB, int m, int n, int k, float alpha, float[] a, int lda,
        float[] b, int ldb, float beta, float[] c, int ldc)
    {
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++)
                {
                    double x = transA == 0 ? a[i + p * lda] : a[p + i * lda];
                    double y = transB == 0 ? b[p + j * ldb] : b[j + p * ldb];
                    sum += x * y;
                }
                c[i + j * ldc] = (float)(alpha * sum + (beta == 0 ? 0 : beta * c[i + j * ldc]));
            }
    }

    [TestCase(false, false)]
    [TestCase(false, true)]
    [TestCase(true, false)]
    [TestCase(true, true)]
    public void RowMajorGemmMapsOntoColumnMajorCublas(bool transA, bool transB)
    {
        const int m = 5, n = 7, k = 3;
        var a = TestData.Uniform(m * k, 1);
        var b = TestData.Uniform(k * n, 2);
        int lda = transA ? m : k, ldb = transB ? k : n, ldc = n;
        // Row-major reference: C[i, j] = sum_p op(A)[i, p] op(B)[p, j].
        var expected = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                for (int p = 0; p < k; p++)
                    expected[i * n + j] += (double)(transA ? a[p * lda + i] : a[i * lda + p]) * (transB ? b[j * ldb + p] : b[p * ldb + j]);
        var call = CublasGemm.FromRowMajor(transA, transB, m, n, k, lda, ldb, ldc);
        Assert.That(call.FirstIsB, "cuBLAS receives B first");
        var c = new float[m * n];
        ColumnMajorSgemm(call.TransFirst, call.TransSecond, call.M, call.N, call.K, 1f, b, call.LdFirst, a, call.LdSecond, 0f, c, call.Ldc);
        TensorAssert.Close(c, expected, 1e-6, 1e-6, $"row-major C via the column-major call (ta={transA}, tb={transB})", [m, n]);
    }

    private static string KernelSources => Path.Combine(AppContext.BaseDirectory, "kernels", "src");

    public static IEnumerable<TestCaseData> KernelFiles() =>
        Directory.Exists(Path.Combine(AppContext.BaseDirectory, "kernels", "src"))
            ? Directory.EnumerateFiles(Path.Combine(AppContext.BaseDirectory, "kernels", "src"), "*.cu").Order(StringComparer.Ordinal)
                .Select(f => new TestCaseData(Path.GetFileName(f)).SetName($"NvrtcCompiles({Path.GetFileName(f)})"))
            : [new TestCaseData("(kernels/src missing)")];

    /// <summary>Every kernel source compiles with NVRTC for sm_80 and sm_90, and the PTX defines every kernel it registers.</summary>
    [TestCaseSource(nameof(KernelFiles))]
    public void NvrtcCompilesForSm80AndSm90(string file)
    {
        string path = Path.Combine(KernelSources, file);
        Assert.That(File.Exists(path), $"{path} is copied next to the tests with OR1.Native");
        string version;
        try
        {
            version = NvrtcCompiler.VersionText();
        }
        catch (DllNotFoundException e)
        {
            if (Environment.GetEnvironmentVariable("OR1_REQUIRE_NVRTC") == "1") Assert.Fail($"NVRTC is required here but not installed: {e.Message}");
            Assert.Ignore($"NVRTC (libnvrtc.so) is not installed: {e.Message}");
            return;
        }
        var kernels = KernelSourceNames.Exported(File.ReadAllText(path));
        Assert.That(kernels, Is.Not.Empty, $"{file} registers its kernels (OR1_REGISTER, OR1_STORAGE_KERNELS, OR1_GEMM_KERNEL)");
        foreach (int arch in new[] { 80, 90 })
        {
            string ptx = NvrtcCompiler.CompileFile(path, arch, KernelSources);
            Assert.That(ptx, Does.Contain($".target sm_{arch}"), $"NVRTC {version} targets sm_{arch}");
            foreach (var kernel in kernels)
                Assert.That(ptx, Does.Contain($".entry {kernel}("), $"{file} for sm_{arch} defines {kernel}");
        }
    }

    [Test]
    public void NvrtcReportsCompileErrorsWithItsLog()
    {
        try
        {
            NvrtcCompiler.VersionText();
        }
        catch (DllNotFoundException e)
        {
            Assert.Ignore($"NVRTC is not installed: {e.Message}");
        }
        var error = Assert.Throws<CudaException>(() => NvrtcCompiler.Compile("extern \"C\" __global__ void broken() { undefined_thing(); }", "broken.cu", 80, KernelSources))!;
        Assert.That(error.Name, Is.EqualTo("NVRTC_ERROR_COMPILATION"));
        Assert.That(error.Message, Does.Contain("undefined_thing"));
    }
}

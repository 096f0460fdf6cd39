using System.Text;
using System.Text.RegularExpressions;
using OR1.Native.Emu;
using OR1.Native.Kernels;
using OR1.Tests.Support;

namespace OR1.Tests.Emu;

/// <summary>
/// The emulator's memcheck: the Emu kernels built with AddressSanitizer (libor1_emu_memcheck.so, CMakeLists.txt), run
/// in a child process that starts with the ASan runtime preloaded (a library built with ASan cannot be loaded into a
/// process that did not start with it). The emulator's device allocations are malloc'd to the byte and the slack of
/// its dynamic shared buffer is poisoned, so a kernel that reads or writes past a buffer stops with the access, the
/// kernel and its stack, as compute-sanitizer's memcheck reports it on a GPU (bench/gpu-check.sh runs that one).
/// Two probes with deliberate bugs show that the check sees them; then the Emu op, model and training tests run under
/// it and must pass without a report.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class EmuMemcheckTests
{
    private const string ProbeCategory = "EmuMemcheckProbe";
    private const string MemcheckLibrary = "libor1_emu_memcheck.so";

    /// <summary>
    /// The Emu fixtures (host launch shapes; the EmuGpuShapes ones repeat them at a GPU's launch shapes) but for the
    /// cases that take minutes under ASan (about 3x slower than the plain emulator) and add no kernel path the others
    /// lack: the 1000-token attention, the repeated backwards, and the sampler's frequency statistics.
    /// </summary>
    private static readonly string[] s_tooSlowUnderMemcheck =
    [
        @"ForwardAndBackwardMatchReference\(\[1000",
        @"TwoRunsOfTheBackwardAreBitIdentical",
        @"FrequenciesMatchTheReferenceDistribution",
        @"SparseHeadsAcrossBlocksFitTheFilteredDistribution",
        @"TiesAtTheBoundariesKeepTheLowestIds",
    ];

    private string _library = null!;
    private string _preload = null!;

    [OneTimeSetUp]
    public void Locate()
    {
        _library = Path.Combine(AppContext.BaseDirectory, MemcheckLibrary);
        string preloadFile = Path.ChangeExtension(_library, ".preload");
        string? why = !File.Exists(_library) ? $"{MemcheckLibrary} was not built (the C++ compiler has no AddressSanitizer, or cmake is missing)"
            : !File.Exists(preloadFile) ? $"{preloadFile} is missing: the CMake build names the ASan runtime there"
            : null;
        if (why is null)
        {
            _preload = File.ReadAllText(preloadFile).Trim();
            if (!File.Exists(_preload)) why = $"{preloadFile} names the ASan runtime {_preload}, which does not exist";
        }
        if (why is null) return;
        if (Environment.GetEnvironmentVariable("OR1_REQUIRE_EMU") == "1") Assert.Fail(why);
        Assert.Ignore(why);
    }

    [Test]
    public async Task AReadPastAnAllocationIsReported()
    {
        var (exitCode, output) = await RunUnderMemcheck($"test =~ {nameof(ProbeReadPastAnAllocation)}");
        Assert.That(exitCode, Is.Not.Zero, output);
        Assert.That(output, Does.Contain("ERROR: AddressSanitizer: heap-buffer-overflow").And.Contain("READ of size 4")
            .And.Contain("emu_selftest_read_past_end").And.Contain("148-byte region"), output);
    }

    [Test]
    public async Task AWritePastTheDynamicSharedMemoryIsReported()
    {
        var (exitCode, output) = await RunUnderMemcheck($"test =~ {nameof(ProbeWritePastTheDynamicSharedMemory)}");
        Assert.That(exitCode, Is.Not.Zero, output);
        Assert.That(output, Does.Contain("ERROR: AddressSanitizer: use-after-poison").And.Contain("WRITE of size 4")
            .And.Contain("emu_selftest_shared_past_end"), output);
    }

    [Test]
    public async Task TheEmuKernelsRunCleanUnderMemcheck()
    {
        string pattern = $@"^(?!.*({string.Join('|', s_tooSlowUnderMemcheck)})).*\(Emu\)";
        var (exitCode, output) = await RunUnderMemcheck($"test =~ {pattern}");
        var summary = Regex.Match(output, @"(\d+) passed, (\d+) failed");
        Assert.Multiple(() =>
        {
            Assert.That(output, Does.Not.Contain("AddressSanitizer"), () => Excerpt(output));
            Assert.That(exitCode, Is.Zero, () => Excerpt(output));
            Assert.That(summary.Success, Is.True, () => Excerpt(output));
        });
        // The filter must have selected the op suite, not a handful of tests.
        Assert.That(int.Parse(summary.Groups[1].Value), Is.GreaterThan(400), summary.Value);
    }

    /// <summary>OR1.Tests.dll run by its own entry point in a child process, under the memcheck emulator.</summary>
    private async Task<(int ExitCode, string Output)> RunUnderMemcheck(string where)
    {
        string outDir = Path.Combine(Path.GetTempPath(), "or1-memcheck-" + Guid.NewGuid().ToString("N"));
        try
        {
            var environment = new Dictionary<string, string>
            {
                ["LD_PRELOAD"] = _preload,
                ["OR1_EMU_LIBRARY"] = _library,
                ["OR1_REQUIRE_EMU"] = "1",
                // CoreCLR turns null dereferences into exceptions through SIGSEGV and uses an alternate signal stack:
                // ASan must leave both alone. Leak reports would list the runtime's own allocations.
                ["ASAN_OPTIONS"] = "detect_leaks=0:handle_segv=0:allow_user_segv_handler=1:use_sigaltstack=0:print_summary=1",
            };
            string tests = Path.Combine(AppContext.BaseDirectory, "OR1.Tests.dll");
            var (exitCode, output, error) = await ChildProcess.RunAsync(DotnetHost(),
                [tests, "--gpu-check", "--tests-only", "--skip-probe", "--where", where, "--out", outDir], TimeSpan.FromMinutes(20),
                environment: environment);
            return (exitCode, output + error);
        }
        finally
        {
            if (Directory.Exists(outDir)) Directory.Delete(outDir, recursive: true);
        }
    }

    /// <summary>
    /// The dotnet host to run OR1.Tests.dll with: the one `dotnet test` names (DOTNET_HOST_PATH), this process's when it
    /// is a dotnet host (not an apphost such as testhost), else the one on PATH.
    /// </summary>
    private static string DotnetHost()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host)) return host;
        string? self = Environment.ProcessPath;
        return self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet" ? self : "dotnet";
    }

    /// <summary>The ASan report (or, without one, the failed tests) of a child's output, for the failure message.</summary>
    private static string Excerpt(string output)
    {
        int report = output.IndexOf("ERROR: AddressSanitizer", StringComparison.Ordinal);
        if (report >= 0) return output[Math.Max(0, report - 200)..Math.Min(output.Length, report + 6000)];
        var failed = output.Split('\n').Where(line => line.Contains("FAILED") || line.StartsWith("       ") || line.Contains("passed,"));
        return string.Join('\n', failed.Take(80));
    }

    // ---------------------------------------------------------------- the probes: deliberate bugs, run only in the child

    [Test, Explicit("a deliberate out-of-bounds read: run only by AReadPastAnAllocationIsReported, under the memcheck emulator")]
    [Category(ProbeCategory)]
    public unsafe void ProbeReadPastAnAllocation()
    {
        const int n = 37;
        var runtime = new EmuRuntime();
        nint input = runtime.Allocate(n * sizeof(float)), output = runtime.Allocate(n * sizeof(float));
        try
        {
            var args = new KernelArgs();
            runtime.Launch("emu_selftest_read_past_end", new Dim3(2), new Dim3(32), 0, ref args.Ptr(input).Ptr(output).Int(n));
        }
        finally
        {
            runtime.Free(input);
            runtime.Free(output);
        }
    }

    [Test, Explicit("a deliberate write past the dynamic shared memory: run only by AWritePastTheDynamicSharedMemoryIsReported")]
    [Category(ProbeCategory)]
    public unsafe void ProbeWritePastTheDynamicSharedMemory()
    {
        const int threads = 64;
        var runtime = new EmuRuntime();
        nint output = runtime.Allocate(threads * sizeof(float));
        try
        {
            var args = new KernelArgs();
            runtime.Launch("emu_selftest_shared_past_end", new Dim3(1), new Dim3(threads), threads * sizeof(float), ref args.Ptr(output));
        }
        finally
        {
            runtime.Free(output);
        }
    }
}

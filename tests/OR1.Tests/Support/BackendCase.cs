using OR1.Native;
using OR1.Native.Cpu;
using OR1.Native.Cuda;
using OR1.Native.Emu;
using OR1.Native.Ilgpu;

namespace OR1.Tests.Support;

/// <summary>
/// One backend the op tests run against. Fixtures are parameterised by these (TestFixtureSource), so
/// adding a backend runs the whole op suite on it. A backend that cannot start on this machine (no GPU,
/// no driver) makes its fixtures Ignored with the reason, never silently passed.
/// </summary>
public sealed class BackendCase
{
    private readonly Func<IBackend> _create;

    public BackendCase(string name, Func<IBackend> create, double toleranceScale = 1.0, string? requiredVariable = null)
    {
        Name = name;
        _create = create;
        ToleranceScale = toleranceScale;
        RequiredVariable = requiredVariable;
    }

    /// <summary>
    /// An environment variable that, set to 1, turns "unavailable" from Ignored into a failure (CI sets
    /// OR1_REQUIRE_EMU=1, so a missing emulation library cannot pass silently).
    /// </summary>
    public string? RequiredVariable { get; }

    /// <summary>Shown in test names.</summary>
    public string Name { get; }

    /// <summary>Multiplies the fp32 tolerances (reduced-precision backends may need more).</summary>
    public double ToleranceScale { get; }

    /// <summary>
    /// True for backends that simulate a GPU slowly (ILGPU's CPU accelerator runs every GPU thread as an OS
    /// thread): op tests run their small, odd shapes on it and skip only their large cases.
    /// </summary>
    public bool TinyShapesOnly { get; init; }

    /// <summary>Marks the test Ignored when <paramref name="isLarge"/> and this backend runs tiny shapes only.</summary>
    public void SkipIfLarge(bool isLarge, string what)
    {
        if (isLarge && TinyShapesOnly) Assert.Ignore($"{what} is too large for the {Name} simulator; its small cases cover this op");
    }

    /// <summary>Creates the backend, or marks the test Ignored with the reason it cannot run here.</summary>
    public IBackend CreateOrIgnore()
    {
        try
        {
            return _create();
        }
        catch (BackendUnavailableException e)
        {
            if (RequiredVariable is not null && Environment.GetEnvironmentVariable(RequiredVariable) == "1")
                Assert.Fail($"{Name} backend is required here ({RequiredVariable}=1) but not available: {e.Message}");
            Assert.Ignore($"{Name} backend is not available on this machine: {e.Message}");
            throw; // unreachable: Assert.Ignore throws
        }
    }

    public override string ToString() => Name;
}

/// <summary>The backends every op test runs on.</summary>
public static class BackendCases
{
    /// <summary>
    /// Fixture parameters, one per backend. Two threads for Cpu: the CI machine's core count, and enough to
    /// exercise every parallel split. Emu runs everywhere (CI sets OR1_REQUIRE_EMU=1 so that a missing
    /// emulation library fails instead of being ignored). Cuda fixtures carry the category "Gpu" and are
    /// ignored, with the reason, where no device can be opened.
    /// </summary>
    public static IEnumerable<TestFixtureData> All()
    {
        yield return Fixture(new BackendCase("Cpu", () => new CpuBackend(threads: 2)));
        // The CUDA kernels on the host emulator: the same fp32 math as on a GPU, so fp32 tolerances hold.
        yield return Fixture(new BackendCase("Emu", () => new EmuBackend(), requiredVariable: "OR1_REQUIRE_EMU"));
        // The same, with the Cuda backend's launch shapes (256-thread blocks per row, its grid sizes and tiles).
        yield return Fixture(new BackendCase("EmuGpuShapes", () => new EmuBackend(EmuLaunchShapes.Gpu), requiredVariable: "OR1_REQUIRE_EMU"));
        // On a GPU: FMA contraction and cuBLAS's summation order move results by a few ulps more.
        yield return Fixture(new BackendCase("Cuda", () => new CudaBackend(), toleranceScale: 2.0, requiredVariable: "OR1_REQUIRE_CUDA"), "Gpu");
        // ILGPU kernels on ILGPU's CPU accelerator: one process-wide simulator (kernels compile once), tiny shapes only.
        yield return Fixture(new BackendCase("Ilgpu-CPU", IlgpuBackend.OnSharedCpuSimulator) { TinyShapesOnly = true });
        // The same ILGPU kernels on a GPU through ILGPU's PTX backend (approximate exp/log: ex2/lg2.approx).
        yield return Fixture(new BackendCase("Ilgpu-CUDA", () => IlgpuBackend.CreateCuda(), toleranceScale: 2.0, requiredVariable: "OR1_REQUIRE_CUDA"), "Gpu");
    }

    private static TestFixtureData Fixture(BackendCase backendCase, string? category = null)
    {
        var data = new TestFixtureData(backendCase);
        if (category is not null) data.Properties.Add(NUnit.Framework.Internal.PropertyNames.Category, category);
        return data;
    }
}

using OR1.Native;
using OR1.Native.Cpu;

namespace OR1.Tests.Support;

/// <summary>
/// One backend the op tests run against. Fixtures are parameterised by these (TestFixtureSource), so
/// adding a backend runs the whole op suite on it. A backend that cannot start on this machine (no GPU,
/// no driver) makes its fixtures Ignored with the reason, never silently passed.
/// </summary>
public sealed class BackendCase
{
    private readonly Func<IBackend> _create;

    public BackendCase(string name, Func<IBackend> create, double toleranceScale = 1.0)
    {
        Name = name;
        _create = create;
        ToleranceScale = toleranceScale;
    }

    /// <summary>Shown in test names.</summary>
    public string Name { get; }

    /// <summary>Multiplies the fp32 tolerances (reduced-precision backends may need more).</summary>
    public double ToleranceScale { get; }

    /// <summary>Creates the backend, or marks the test Ignored with the reason it cannot run here.</summary>
    public IBackend CreateOrIgnore()
    {
        try
        {
            return _create();
        }
        catch (BackendUnavailableException e)
        {
            Assert.Ignore($"{Name} backend is not available on this machine: {e.Message}");
            throw; // unreachable: Assert.Ignore throws
        }
    }

    public override string ToString() => Name;
}

/// <summary>The backends every op test runs on.</summary>
public static class BackendCases
{
    /// <summary>Two threads: the CI machine's core count, and enough to exercise every parallel split.</summary>
    public static IEnumerable<BackendCase> All()
    {
        yield return new BackendCase("Cpu", () => new CpuBackend(threads: 2));
    }
}

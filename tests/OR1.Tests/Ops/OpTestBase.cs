using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

/// <summary>
/// Base of the op fixtures: one instance per backend case, a fresh backend per fixture, and the
/// tensors a test creates disposed after it.
/// </summary>
public abstract class OpTestBase
{
    private readonly List<IDisposable> _owned = [];

    protected OpTestBase(BackendCase backendCase) => Case = backendCase;

    protected BackendCase Case { get; }

    protected IBackend Backend { get; private set; } = null!;

    [OneTimeSetUp]
    public void CreateBackend() => Backend = Case.CreateOrIgnore();

    [OneTimeTearDown]
    public void DisposeBackend() => Backend?.Dispose();

    [TearDown]
    public void DisposeTensors()
    {
        foreach (var d in _owned) d.Dispose();
        _owned.Clear();
    }

    /// <summary>Registers a tensor (or segments) for disposal after the test.</summary>
    protected T Own<T>(T disposable) where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    protected Tensor Floats(float[] data, params int[] shape) => Own(Backend.Floats(data, shape));
    protected Tensor Ints(int[] data, params int[] shape) => Own(Backend.Ints(data, shape));
    protected Tensor Zeros(params int[] shape) => Own(Backend.Zeros(shape));
    protected Tensor Poisoned(params int[] shape) => Own(Backend.Poisoned(shape));
    protected Segments Lengths(params int[] lengths) => Own(Segments.FromLengths(Backend, lengths));

    /// <summary>Ignores a large case on backends that run tiny shapes only (the ILGPU CPU simulator).</summary>
    protected void SkipIfLarge(bool isLarge, string what) => Case.SkipIfLarge(isLarge, what);

    /// <summary>An fp32 tolerance scaled for the backend under test.</summary>
    protected double Tol(double value) => value * Case.ToleranceScale;
}

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
    /// <summary>A key cache [pages, pageSize, width] from its rows, in the backend's layout (<see cref="BackendTensors.KeyCache(IBackend, float[], int, int, int)"/>).</summary>
    protected Tensor KeyCache(float[] rows, int pages, int pageSize, int width) => Own(Backend.KeyCache(rows, pages, pageSize, width));

    /// <summary>The call throws an ArgumentException whose message holds every fragment.</summary>
    protected static void ExpectArgumentError(TestDelegate call, params string[] fragments)
    {
        var e = Assert.Throws(Is.InstanceOf<ArgumentException>(), call) as ArgumentException;
        foreach (var fragment in fragments)
            Assert.That(e!.Message, Does.Contain(fragment), $"message was: {e.Message}");
    }
    protected Tensor Poisoned(params int[] shape) => Own(Backend.Poisoned(shape));
    protected Segments Lengths(params int[] lengths) => Own(Segments.FromLengths(Backend, lengths));

    /// <summary>
    /// <paramref name="data"/> in a view of <paramref name="shape"/> at element <paramref name="offset"/> of a fresh buffer
    /// of <paramref name="dtype"/> (Float32 or BFloat16, the elements before it NaN), as the model's packed buffers hand
    /// tensors to ops. An offset that is not a multiple of the 16-byte pack (4 floats, 8 bf16) moves every row off the
    /// 16-byte grid, so the kernels run their scalar ends, or their scalar path where operands are off by different amounts.
    /// </summary>
    protected Tensor ViewAt(int offset, DType dtype, float[] data, params int[] shape)
    {
        var view = PoisonedViewAt(offset, dtype, shape);
        if (dtype == DType.BFloat16) Backend.Upload<BFloat16>(data.Select(v => (BFloat16)v).ToArray(), view);
        else Backend.Upload<float>(data, view);
        return view;
    }

    /// <summary>A view as <see cref="ViewAt"/> filled with NaN, for outputs an op must overwrite completely.</summary>
    protected Tensor PoisonedViewAt(int offset, DType dtype, params int[] shape)
    {
        var layout = new TensorShape(shape);
        var whole = Own(Backend.Allocate(dtype, new TensorShape(checked((int)(offset + layout.ElementCount)))));
        Backend.Fill(whole, float.NaN);
        return whole.View(offset, layout);
    }

    /// <summary>Ignores a large case on backends that run tiny shapes only (the ILGPU CPU simulator).</summary>
    protected void SkipIfLarge(bool isLarge, string what) => Case.SkipIfLarge(isLarge, what);

    /// <summary>An fp32 tolerance scaled for the backend under test.</summary>
    protected double Tol(double value) => value * Case.ToleranceScale;
}

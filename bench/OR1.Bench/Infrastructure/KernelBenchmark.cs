using BenchmarkDotNet.Attributes;
using OR1.Native;

namespace OR1.Bench;

/// <summary>
/// The base of the per-family kernel benchmarks (one class per kernel family, as kernels/*.cu and
/// src/OR1.Native/Cpu are split). A case is a backend and a shape (<see cref="Case"/>); sizes are pure
/// functions of the case, so the summary's columns can compute bytes and flops without running setup.
/// <para>
/// Timing: every benchmark method ends with <see cref="IBackend.Synchronize"/>, so asynchronous GPU work
/// is timed to completion. Kernels that finish in microseconds on a GPU run <see cref="Launches"/> times
/// per measured operation (OperationsPerInvoke), so one synchronisation is spread over many launches and
/// the mean is per launch; the long compute-bound ones run once.
/// </para>
/// </summary>
[Config(typeof(KernelBenchmarkConfig))]
public abstract class KernelBenchmark : IThroughputBenchmark, IPeakReferenced, IDisposable
{
    /// <summary>Launches per measured operation of the short kernels.</summary>
    public const int Launches = 16;

    private readonly List<IDisposable> _owned = [];

    /// <summary>Backend and shape, e.g. "cpu/Qwen2.5-1.5B".</summary>
    [ParamsSource(nameof(Cases))]
    public KernelCase Case { get; set; } = new("cpu", BenchScale.Simulator, ModelShape.OddTiny, RolloutShape.OddTiny);

    /// <summary>The cases this family runs: every backend that starts here with every model shape.</summary>
    public virtual IEnumerable<KernelCase> Cases() => KernelCase.ForModels();

    /// <summary>The backend of the current case (after setup).</summary>
    protected IBackend Backend { get; private set; } = null!;

    /// <summary>The model widths of the current case.</summary>
    protected ModelShape Model => Case.ModelShape;

    /// <summary>The token counts of the current case's backend.</summary>
    protected BenchScale Scale => Case.Scale;

    string IPeakReferenced.BackendName => Case.Backend;

    [GlobalSetup]
    public void Setup()
    {
        Backend = Backends.Create(Case.Backend);
        Allocate(new Random(42));
        Backend.Synchronize();
    }

    /// <summary>
    /// <see cref="Launches"/> launches of one short kernel, then one synchronisation: the body of every
    /// memory-bound benchmark (marked OperationsPerInvoke = Launches). Pass a static lambda: it is cached,
    /// so nothing is allocated per measured operation.
    /// </summary>
    protected void Repeat<TSelf>(Action<TSelf> launch) where TSelf : KernelBenchmark
    {
        var self = (TSelf)this;
        for (int i = 0; i < Launches; i++) launch(self);
        Backend.Synchronize();
    }

    /// <summary>Allocates and fills the current case's tensors.</summary>
    protected abstract void Allocate(Random random);

    /// <inheritdoc />
    public abstract long BytesMoved(string method);

    /// <inheritdoc />
    public abstract double Flops(string method);

    /// <summary>A float tensor of uniform values in [-scale, scale).</summary>
    protected Tensor Floats(Random random, TensorShape shape, float scale = 1f)
    {
        var t = Own(Backend.Allocate(DType.Float32, shape));
        var data = new float[shape.ElementCount];
        RandomFill.Uniform(data, random.Next(), scale);
        Backend.Upload<float>(data, t);
        return t;
    }

    protected Tensor Floats(Random random, int rows, int columns, float scale = 1f) => Floats(random, new TensorShape(rows, columns), scale);

    /// <summary>Uniform values in [-scale, scale) in the case's storage dtype (<see cref="KernelCase.Storage"/>), rounded once on the device.</summary>
    protected Tensor Stored(Random random, TensorShape shape, float scale = 1f)
    {
        var values = Floats(random, shape, scale);
        if (Case.Storage == DType.Float32) return values;
        var stored = StoredZeros(shape);
        Backend.Convert(values, stored);
        return stored;
    }

    /// <summary><paramref name="values"/> in the case's storage dtype, rounded once on the device.</summary>
    protected Tensor Stored(float[] values, TensorShape shape)
    {
        var t = Own(Backend.Allocate(DType.Float32, shape));
        Backend.Upload<float>(values, t);
        if (Case.Storage == DType.Float32) return t;
        var stored = StoredZeros(shape);
        Backend.Convert(t, stored);
        return stored;
    }

    /// <summary>A zero-filled tensor in the case's storage dtype.</summary>
    protected Tensor StoredZeros(TensorShape shape)
    {
        var t = Own(Backend.Allocate(Case.Storage, shape));
        Backend.Fill(t, 0f);
        return t;
    }

    protected Tensor Floats(Random random, int count, float scale = 1f) => Floats(random, new TensorShape(count), scale);

    /// <summary>An Int32 tensor of <paramref name="count"/> values in [0, maxExclusive).</summary>
    protected Tensor Ints(Random random, int count, int maxExclusive)
    {
        var values = new int[count];
        for (int i = 0; i < count; i++) values[i] = random.Next(maxExclusive);
        return Ints(values);
    }

    /// <summary>An Int32 tensor holding <paramref name="values"/>.</summary>
    protected Tensor Ints(int[] values)
    {
        var t = Own(Backend.Allocate(DType.Int32, new TensorShape(values.Length)));
        Backend.Upload<int>(values, t);
        return t;
    }

    /// <summary>A zero-filled float tensor.</summary>
    protected Tensor Zeros(TensorShape shape) => Own(Backend.Allocate(DType.Float32, shape));

    /// <summary>Packed segments of the given lengths.</summary>
    protected Segments SegmentsOf(int[] lengths) => Own(Segments.FromLengths(Backend, lengths));

    private T Own<T>(T disposable) where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    [GlobalCleanup]
    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        _owned.Clear();
        Backend?.Dispose();
        Backend = null!;
        GC.SuppressFinalize(this);
    }
}

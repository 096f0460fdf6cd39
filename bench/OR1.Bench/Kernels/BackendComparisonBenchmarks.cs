using BenchmarkDotNet.Attributes;
using OR1.Native;
using OR1.Native.Cpu;
using OR1.Native.Ilgpu;

namespace OR1.Bench.Kernels;

/// <summary>
/// The "which implementation wins" table: the same ops, on the same inputs, across backends. A case is
/// backend/size: every backend runs the tiny size (the only one ILGPU's CPU simulator can run: every
/// simulated GPU thread is an OS thread), and the backends that are fast enough also run a model-sized
/// problem (Qwen2.5-1.5B-like widths). Device backends are included only where they can start (a CUDA
/// GPU for Ilgpu-CUDA; the Cuda backend's kernels/*.cu once it exists, found by name so this file does not
/// depend on it). Each op is followed by Synchronize, so asynchronous GPU work is timed to completion.
/// <code>dotnet run -c Release --project bench/OR1.Bench -- --filter '*BackendComparison*' [--quick]</code>
/// </summary>
public class BackendComparisonBenchmarks : IDisposable
{
    private readonly List<IDisposable> _owned = [];
    private IBackend _backend = null!;
    private Problem _p = null!;
    private Tensor _a = null!, _b = null!, _c = null!;
    private Tensor _q = null!, _k = null!, _v = null!, _o = null!, _lse = null!, _dq = null!, _dk = null!, _dv = null!;
    private Segments _sequences = null!;
    private Tensor _x = null!, _w = null!, _y = null!, _invRms = null!, _gate = null!, _up = null!;
    private Tensor _hidden = null!, _head = null!, _targets = null!, _logProbs = null!, _entropy = null!, _rowLse = null!;
    private Tensor _logits = null!, _tokens = null!, _sampledLogProbs = null!;

    /// <summary>Sizes of one case.</summary>
    private sealed record Problem(int M, int N, int K, int[] Sequences, AttentionHeads Heads, int Rows, int Width, int Vocab, int SampleRows, int SampleVocab);

    private static readonly Problem Tiny = new(64, 64, 64, [16, 16], new AttentionHeads(4, 2, 16), 32, 64, 256, 8, 256);
    private static readonly Problem ModelSized = new(1024, 1024, 1024, [512, 512], new AttentionHeads(12, 2, 128), 512, 1536, 8192, 64, 32000);

    /// <summary>backend/size pairs that can run on this machine.</summary>
    public static IEnumerable<string> Cases()
    {
        yield return "Cpu/tiny";
        yield return "Ilgpu-CPU/tiny";
        bool ilgpuCuda = CanStart(() => IlgpuBackend.CreateCuda());
        bool cuda = CudaBackendFactory() is { } factory && CanStart(factory);
        if (ilgpuCuda) yield return "Ilgpu-CUDA/tiny";
        if (cuda) yield return "Cuda/tiny";
        yield return "Cpu/model";
        if (ilgpuCuda) yield return "Ilgpu-CUDA/model";
        if (cuda) yield return "Cuda/model";
    }

    /// <summary>Backend and size, e.g. "Ilgpu-CPU/tiny".</summary>
    [ParamsSource(nameof(Cases))]
    public string Case { get; set; } = "Cpu/tiny";

    private static bool CanStart(Func<IBackend> create)
    {
        try
        {
            create().Dispose();
            return true;
        }
        catch (BackendUnavailableException)
        {
            return false;
        }
    }

    /// <summary>The Cuda backend (kernels/*.cu through the driver API) when this build has one with a parameterless constructor.</summary>
    private static Func<IBackend>? CudaBackendFactory()
    {
        var type = typeof(IBackend).Assembly.GetType("OR1.Native.Cuda.CudaBackend");
        if (type?.GetConstructor(Type.EmptyTypes) is null) return null;
        return () =>
        {
            try
            {
                return (IBackend)Activator.CreateInstance(type)!;
            }
            catch (System.Reflection.TargetInvocationException e) when (e.InnerException is BackendUnavailableException unavailable)
            {
                throw unavailable;
            }
        };
    }

    [GlobalSetup]
    public void Setup()
    {
        var parts = Case.Split('/');
        _p = parts[1] == "tiny" ? Tiny : ModelSized;
        _backend = parts[0] switch
        {
            "Cpu" => new CpuBackend(),
            "Ilgpu-CPU" => IlgpuBackend.CreateCpuSimulator(),
            "Ilgpu-CUDA" => IlgpuBackend.CreateCuda(),
            "Cuda" => CudaBackendFactory()!(),
            _ => throw new ArgumentException($"unknown backend in case {Case}"),
        };
        var random = new Random(42);
        _a = Random(random, _p.M, _p.K);
        _b = Random(random, _p.K, _p.N);
        _c = Random(random, _p.M, _p.N);

        int n = _p.Sequences.Sum();
        var h = _p.Heads;
        _sequences = Own(Segments.FromLengths(_backend, _p.Sequences));
        _q = Random(random, n, h.QueryWidth);
        _k = Random(random, n, h.KvWidth);
        _v = Random(random, n, h.KvWidth);
        _o = Random(random, n, h.QueryWidth);
        _lse = Random(random, n, h.NumHeads);
        _dq = Random(random, n, h.QueryWidth);
        _dk = Random(random, n, h.KvWidth);
        _dv = Random(random, n, h.KvWidth);
        _backend.AttentionForward(_q, _k, _v, _sequences, h, h.DefaultScale, _o, _lse);

        _x = Random(random, _p.Rows, _p.Width);
        _w = Random(random, _p.Width);
        _y = Random(random, _p.Rows, _p.Width);
        _invRms = Random(random, _p.Rows);
        _gate = Random(random, _p.Rows, _p.Width);
        _up = Random(random, _p.Rows, _p.Width);

        _hidden = Random(random, _p.Rows, _p.Width);
        _head = Random(random, _p.Vocab, _p.Width, 0.05f);
        _targets = Own(_backend.Allocate(DType.Int32, new TensorShape(_p.Rows)));
        _backend.Upload<int>(Enumerable.Range(0, _p.Rows).Select(_ => random.Next(_p.Vocab)).ToArray(), _targets);
        _logProbs = Random(random, _p.Rows);
        _entropy = Random(random, _p.Rows);
        _rowLse = Random(random, _p.Rows);

        _logits = Random(random, _p.SampleRows, _p.SampleVocab, 3f);
        _tokens = Own(_backend.Allocate(DType.Int32, new TensorShape(_p.SampleRows)));
        _sampledLogProbs = Random(random, _p.SampleRows);
        _backend.Synchronize();
    }

    private T Own<T>(T d) where T : IDisposable
    {
        _owned.Add(d);
        return d;
    }

    private Tensor Random(Random random, int rows, int cols = -1, float scale = 1f)
    {
        var shape = cols < 0 ? new TensorShape(rows) : new TensorShape(rows, cols);
        var t = Own(_backend.Allocate(DType.Float32, shape));
        var data = new float[shape.ElementCount];
        for (int i = 0; i < data.Length; i++) data[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        _backend.Upload<float>(data, t);
        return t;
    }

    [Benchmark]
    public void MatMul()
    {
        _backend.MatMul(_a, false, _b, false, _c);
        _backend.Synchronize();
    }

    [Benchmark]
    public void AttentionForward()
    {
        _backend.AttentionForward(_q, _k, _v, _sequences, _p.Heads, _p.Heads.DefaultScale, _o, _lse);
        _backend.Synchronize();
    }

    [Benchmark]
    public void AttentionBackward()
    {
        _backend.AttentionBackward(_o, _q, _k, _v, _o, _lse, _sequences, _p.Heads, _p.Heads.DefaultScale, _dq, _dk, _dv);
        _backend.Synchronize();
    }

    [Benchmark]
    public void RmsNormForward()
    {
        _backend.RmsNormForward(_x, _w, 1e-6f, _y, _invRms);
        _backend.Synchronize();
    }

    [Benchmark]
    public void SwiGluForward()
    {
        _backend.SwiGluForward(_gate, _up, _y);
        _backend.Synchronize();
    }

    [Benchmark]
    public void LogProbForward()
    {
        _backend.LogProbForward(_hidden, _head, _targets, 1f, _logProbs, _entropy, _rowLse);
        _backend.Synchronize();
    }

    [Benchmark]
    public void SampleTopP()
    {
        _backend.Sample(_logits, new SamplingOptions(1f, 0.9f), 7, 1, _tokens, _sampledLogProbs);
        _backend.Synchronize();
    }

    [GlobalCleanup]
    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        _owned.Clear();
        _backend?.Dispose();
        GC.SuppressFinalize(this);
    }
}

using OR1.Model;
using OR1.Native;
using OR1.Native.Cpu;
using OR1.Native.Ilgpu;
using OR1.Tests.Model;
using OR1.Tests.Support;

namespace OR1.Tests.Ilgpu;

/// <summary>
/// The Ilgpu backend against the Cpu backend on identical inputs: every kernel family, and the whole
/// Qwen2 model's forward and backward on a tiny config. One body, two fixtures: the CPU simulator at
/// tiny sizes, and a CUDA GPU (Category "Gpu") at sizes where tiles, chunks and grids are full.
/// </summary>
public abstract class IlgpuAgainstCpuTests
{
    private readonly List<IDisposable> _owned = [];

    protected IlgpuBackend Ilgpu { get; private set; } = null!;
    protected CpuBackend Cpu { get; private set; } = null!;

    /// <summary>Problem sizes of one fixture.</summary>
    protected sealed record Sizes(int[] Sequences, AttentionHeads Heads, int Rows, int Width, int Vocab, (int M, int N, int K) Gemm, int SampleRows, int SampleVocab);

    protected abstract Sizes Size { get; }

    protected abstract IlgpuBackend CreateIlgpu();

    [OneTimeSetUp]
    public void Create()
    {
        Ilgpu = CreateIlgpu();
        Cpu = new CpuBackend(threads: 2);
    }

    [OneTimeTearDown]
    public void Destroy()
    {
        Ilgpu?.Dispose();
        Cpu?.Dispose();
    }

    [TearDown]
    public void DisposeTensors()
    {
        foreach (var d in _owned) d.Dispose();
        _owned.Clear();
    }

    private (Tensor Ilgpu, Tensor Cpu) Pair(float[] data, params int[] shape) => (Own(Ilgpu.Floats(data, shape)), Own(Cpu.Floats(data, shape)));
    private (Tensor Ilgpu, Tensor Cpu) IntPair(int[] data, params int[] shape) => (Own(Ilgpu.Ints(data, shape)), Own(Cpu.Ints(data, shape)));
    private (Tensor Ilgpu, Tensor Cpu) ZeroPair(params int[] shape) => (Own(Ilgpu.Zeros(shape)), Own(Cpu.Zeros(shape)));

    private T Own<T>(T d) where T : IDisposable
    {
        _owned.Add(d);
        return d;
    }

    private static void Close((Tensor Ilgpu, Tensor Cpu) pair, double tol, string what) =>
        TensorAssert.Close(pair.Ilgpu.ToFloats(), pair.Cpu.ToFloats(), tol, tol, what);

    [Test]
    public void MatMulEveryTransposeCase()
    {
        var (m, n, k) = Size.Gemm;
        foreach (bool ta in new[] { false, true })
        foreach (bool tb in new[] { false, true })
        {
            var a = Pair(TestData.Uniform(m * k, 1), ta ? k : m, ta ? m : k);
            var b = Pair(TestData.Uniform(k * n, 2), tb ? n : k, tb ? k : n);
            var c = Pair(TestData.Uniform(m * n, 3), m, n);
            Ilgpu.MatMul(a.Ilgpu, ta, b.Ilgpu, tb, c.Ilgpu, 0.5f, 1f);
            Cpu.MatMul(a.Cpu, ta, b.Cpu, tb, c.Cpu, 0.5f, 1f);
            Close(c, 1e-4, $"C ({m}x{n}x{k}, ta={ta}, tb={tb})");
        }
    }

    [Test]
    public void AttentionForwardBackwardAndDecode()
    {
        var heads = Size.Heads;
        int n = Size.Sequences.Sum();
        var segI = Own(Segments.FromLengths(Ilgpu, Size.Sequences));
        var segC = Own(Segments.FromLengths(Cpu, Size.Sequences));
        var q = Pair(TestData.Normal(n * heads.QueryWidth, 1), n, heads.QueryWidth);
        var k = Pair(TestData.Normal(n * heads.KvWidth, 2), n, heads.KvWidth);
        var v = Pair(TestData.Normal(n * heads.KvWidth, 3), n, heads.KvWidth);
        var dy = Pair(TestData.Normal(n * heads.QueryWidth, 4), n, heads.QueryWidth);
        var y = ZeroPair(n, heads.QueryWidth);
        var lse = ZeroPair(n, heads.NumHeads);
        Ilgpu.AttentionForward(q.Ilgpu, k.Ilgpu, v.Ilgpu, segI, heads, heads.DefaultScale, y.Ilgpu, lse.Ilgpu);
        Cpu.AttentionForward(q.Cpu, k.Cpu, v.Cpu, segC, heads, heads.DefaultScale, y.Cpu, lse.Cpu);
        Close(y, 2e-5, "attention output");
        Close(lse, 2e-5, "log-sum-exp");
        var dq = ZeroPair(n, heads.QueryWidth);
        var dk = ZeroPair(n, heads.KvWidth);
        var dv = ZeroPair(n, heads.KvWidth);
        Ilgpu.AttentionBackward(dy.Ilgpu, q.Ilgpu, k.Ilgpu, v.Ilgpu, y.Ilgpu, lse.Ilgpu, segI, heads, heads.DefaultScale, dq.Ilgpu, dk.Ilgpu, dv.Ilgpu);
        Cpu.AttentionBackward(dy.Cpu, q.Cpu, k.Cpu, v.Cpu, y.Cpu, lse.Cpu, segC, heads, heads.DefaultScale, dq.Cpu, dk.Cpu, dv.Cpu);
        Close(dq, 1e-4, "dq");
        Close(dk, 1e-4, "dk");
        Close(dv, 1e-4, "dv");

        // Decode: each sequence's rows as a cache slot (reversed slot order), the query of its last row.
        int b = Size.Sequences.Count(l => l > 0), maxLength = Size.Sequences.Max();
        var cacheK = new float[b * maxLength * heads.KvWidth];
        var cacheV = new float[cacheK.Length];
        var queries = new float[b * heads.QueryWidth];
        var slots = new int[b];
        var lengths = new int[b];
        var kHost = k.Cpu.ToFloats();
        var vHost = v.Cpu.ToFloats();
        var qHost = q.Cpu.ToFloats();
        int entry = 0, start = 0;
        foreach (int length in Size.Sequences)
        {
            if (length == 0) continue;
            int slot = b - 1 - entry;
            Array.Copy(kHost, start * heads.KvWidth, cacheK, slot * maxLength * heads.KvWidth, length * heads.KvWidth);
            Array.Copy(vHost, start * heads.KvWidth, cacheV, slot * maxLength * heads.KvWidth, length * heads.KvWidth);
            Array.Copy(qHost, (start + length - 1) * heads.QueryWidth, queries, entry * heads.QueryWidth, heads.QueryWidth);
            slots[entry] = slot;
            lengths[entry] = length;
            start += length;
            entry++;
        }
        (Tensor Ilgpu, Tensor Cpu) kc = (Own(Ilgpu.KeyCache(cacheK, b, maxLength, heads.KvWidth)), Own(Cpu.KeyCache(cacheK, b, maxLength, heads.KvWidth)));
        var vc = Pair(cacheV, b, maxLength, heads.KvWidth);
        var qd = Pair(queries, b, heads.QueryWidth);
        var sl = IntPair(slots, b);
        var ln = IntPair(lengths, b);
        var yd = ZeroPair(b, heads.QueryWidth);
        Ilgpu.AttentionDecode(qd.Ilgpu, kc.Ilgpu, vc.Ilgpu, sl.Ilgpu, ln.Ilgpu, heads, heads.DefaultScale, yd.Ilgpu);
        Cpu.AttentionDecode(qd.Cpu, kc.Cpu, vc.Cpu, sl.Cpu, ln.Cpu, heads, heads.DefaultScale, yd.Cpu);
        Close(yd, 2e-5, "decode output");
    }

    [Test]
    public void LogProbForwardAndBackward()
    {
        int rows = Size.Rows, width = Size.Width, vocab = Size.Vocab;
        var hidden = Pair(TestData.Normal(rows * width, 5), rows, width);
        var weight = Pair(TestData.Normal(vocab * width, 6, std: 0.3f), vocab, width);
        var targets = IntPair(TestData.Ints(rows, vocab, 7), rows);
        var lp = ZeroPair(rows);
        var ent = ZeroPair(rows);
        var lse = ZeroPair(rows);
        Ilgpu.LogProbForward(hidden.Ilgpu, weight.Ilgpu, targets.Ilgpu, 0.9f, lp.Ilgpu, ent.Ilgpu, lse.Ilgpu);
        Cpu.LogProbForward(hidden.Cpu, weight.Cpu, targets.Cpu, 0.9f, lp.Cpu, ent.Cpu, lse.Cpu);
        Close(lp, 1e-4, "log-probs");
        Close(ent, 1e-4, "entropy");
        Close(lse, 1e-4, "log-sum-exp");
        var dlp = Pair(TestData.Uniform(rows, 8), rows);
        var dent = Pair(TestData.Uniform(rows, 9), rows);
        var dh = ZeroPair(rows, width);
        var dw = Pair(TestData.Uniform(vocab * width, 10), vocab, width);
        Ilgpu.LogProbBackward(dlp.Ilgpu, dent.Ilgpu, hidden.Ilgpu, weight.Ilgpu, targets.Ilgpu, 0.9f, ent.Ilgpu, lse.Ilgpu, dh.Ilgpu, dw.Ilgpu);
        Cpu.LogProbBackward(dlp.Cpu, dent.Cpu, hidden.Cpu, weight.Cpu, targets.Cpu, 0.9f, ent.Cpu, lse.Cpu, dh.Cpu, dw.Cpu);
        Close(dh, 1e-4, "dHidden");
        Close(dw, 1e-4, "dWeight (accumulated)");
    }

    [Test]
    public void NormRopeSwiGluEmbeddingAdamWAndNorm()
    {
        int rows = Size.Rows, width = Size.Width, vocab = Size.Vocab;
        var heads = Size.Heads;
        var x = Pair(TestData.Normal(rows * width, 11), rows, width);
        var w = Pair(TestData.Uniform(width, 12, 0.5f, 1.5f), width);
        var y = ZeroPair(rows, width);
        var inv = ZeroPair(rows);
        Ilgpu.RmsNormForward(x.Ilgpu, w.Ilgpu, 1e-6f, y.Ilgpu, inv.Ilgpu);
        Cpu.RmsNormForward(x.Cpu, w.Cpu, 1e-6f, y.Cpu, inv.Cpu);
        Close(y, 1e-5, "RMSNorm output");
        var dx = ZeroPair(rows, width);
        var dw = ZeroPair(width);
        Ilgpu.RmsNormBackward(x.Ilgpu, x.Ilgpu, w.Ilgpu, inv.Ilgpu, dx.Ilgpu, dw.Ilgpu);
        Cpu.RmsNormBackward(x.Cpu, x.Cpu, w.Cpu, inv.Cpu, dx.Cpu, dw.Cpu);
        Close(dx, 1e-4, "RMSNorm dx");
        Close(dw, 1e-3, "RMSNorm dWeight");

        var positions = IntPair(Enumerable.Range(0, rows).Select(i => (i * 37) % 3000).ToArray(), rows);
        var r = Pair(TestData.Uniform(rows * heads.QueryWidth, 13), rows, heads.QueryWidth);
        var ry = ZeroPair(rows, heads.QueryWidth);
        Ilgpu.RopeForward(r.Ilgpu, positions.Ilgpu, heads.NumHeads, heads.HeadDim, 1e6f, ry.Ilgpu);
        Cpu.RopeForward(r.Cpu, positions.Cpu, heads.NumHeads, heads.HeadDim, 1e6f, ry.Cpu);
        Close(ry, 1e-5, "RoPE");

        var g = Pair(TestData.Uniform(rows * width, 14, -5, 5), rows, width);
        var sw = ZeroPair(rows, width);
        Ilgpu.SwiGluForward(g.Ilgpu, x.Ilgpu, sw.Ilgpu);
        Cpu.SwiGluForward(g.Cpu, x.Cpu, sw.Cpu);
        Close(sw, 1e-5, "SwiGLU");

        var ids = IntPair(TestData.Ints(rows, Math.Max(1, vocab / 8), 15), rows); // repeated ids
        var table = ZeroPair(vocab, width);
        Ilgpu.EmbeddingBackward(ids.Ilgpu, x.Ilgpu, table.Ilgpu);
        Cpu.EmbeddingBackward(ids.Cpu, x.Cpu, table.Cpu);
        TensorAssert.Close(table.Ilgpu.ToFloats(), table.Cpu.ToFloats(), 0, 0, "embedding gradient (same order, bit for bit)");

        var p = Pair(TestData.Uniform(rows * width, 16), rows, width);
        var m1 = ZeroPair(rows, width);
        var v1 = ZeroPair(rows, width);
        Ilgpu.AdamWStep([new AdamWSlot(p.Ilgpu, x.Ilgpu, m1.Ilgpu, v1.Ilgpu)], new AdamWOptions(1e-3), 3, 0.7f);
        Cpu.AdamWStep([new AdamWSlot(p.Cpu, x.Cpu, m1.Cpu, v1.Cpu)], new AdamWOptions(1e-3), 3, 0.7f);
        Close(p, 1e-6, "AdamW parameters");
        Assert.That(Ilgpu.GlobalNorm([x.Ilgpu, p.Ilgpu]), Is.EqualTo(Cpu.GlobalNorm([x.Cpu, p.Cpu])).Within(1e-5).Percent, "global norm");
    }

    [TestCase(1f, 1f, 0)]
    [TestCase(0.8f, 0.9f, 40)]
    public void SamplingDrawsTheSameTokens(float temperature, float topP, int topK)
    {
        int rows = Size.SampleRows, vocab = Size.SampleVocab;
        var logits = Pair(TestData.Normal(rows * vocab, 17, std: 3f), rows, vocab);
        var tokens = (Own(Ilgpu.Allocate(DType.Int32, new TensorShape(rows))), Own(Cpu.Allocate(DType.Int32, new TensorShape(rows))));
        var lp = ZeroPair(rows);
        var options = new SamplingOptions(temperature, topP, topK);
        Ilgpu.Sample(logits.Ilgpu, options, 5, 9, tokens.Item1, lp.Ilgpu);
        Cpu.Sample(logits.Cpu, options, 5, 9, tokens.Item2, lp.Cpu);
        TensorAssert.Equal(tokens.Item1.ToInts(), tokens.Item2.ToInts(), "tokens");
        Close(lp, 1e-5, "log-probs of the drawn tokens");
    }

    [TestCase(false)]
    [TestCase(true)]
    public void TinyModelForwardAndBackwardMatchTheCpuBackend(bool tied)
    {
        var config = TinyModels.Config(tied);
        int[][] sequences = [[3, 17, 0, 36, 5, 5, 12], [9], [30, 2, 11, 7]];
        var targets = sequences.SelectMany(s => s.Skip(1).Append(0)).ToArray();
        int t = targets.Length;
        var dLogProbs = TestData.Uniform(t, 1);
        var dEntropy = TestData.Uniform(t, 2);
        var results = new List<(float[] Logits, float[] LogProbs, float[] Entropy, Dictionary<string, float[]> Gradients)>();
        foreach (IBackend backend in new IBackend[] { Ilgpu, Cpu })
        {
            using var model = new Qwen2Model(backend, config);
            TinyModels.Randomize(model.Weights, 700);
            using var gradients = new Qwen2Weights(backend, config);
            using var batch = PackedBatch.Create(backend, sequences);
            using var act = new Qwen2Activations(backend, config, t);
            using var tt = backend.Ints(targets, t);
            using var lp = backend.Zeros(t);
            using var ent = backend.Zeros(t);
            using var logits = backend.Zeros(t, config.VocabSize);
            var hidden = model.Forward(batch, act);
            model.Logits(hidden, logits);
            model.LogProbs(act, tt, 0.9f, lp, ent);
            gradients.Zero();
            using var dlp = backend.Floats(dLogProbs, t);
            using var dent = backend.Floats(dEntropy, t);
            model.Backward(batch, act, tt, 0.9f, dlp, dent, ent, gradients);
            results.Add((logits.ToFloats(), lp.ToFloats(), ent.ToFloats(),
                model.Weights.Named.ToDictionary(p => p.Name, p => gradients[p.Name].ToFloats())));
        }
        var (ilgpu, cpu) = (results[0], results[1]);
        TensorAssert.Close(ilgpu.Logits, cpu.Logits, 1e-5, 1e-4, "logits");
        TensorAssert.Close(ilgpu.LogProbs, cpu.LogProbs, 1e-5, 1e-4, "log-probs");
        TensorAssert.Close(ilgpu.Entropy, cpu.Entropy, 1e-5, 1e-4, "entropies");
        foreach (var (name, gradient) in cpu.Gradients)
            TensorAssert.Close(ilgpu.Gradients[name], gradient, 1e-5, 1e-3, $"gradient of {name}");
    }
}

/// <summary>The comparison on ILGPU's CPU simulator, at tiny sizes (odd everywhere, a ragged last tile and chunk).</summary>
public sealed class IlgpuSimulatorAgainstCpuTests : IlgpuAgainstCpuTests
{
    protected override Sizes Size { get; } = new([5, 0, 11, 1, 6], new AttentionHeads(6, 2, 12), Rows: 23, Width: 19, Vocab: 301, Gemm: (13, 21, 17),
        SampleRows: 6, SampleVocab: 150);

    protected override IlgpuBackend CreateIlgpu() => IlgpuBackend.OnSharedCpuSimulator();
}

/// <summary>The comparison on a CUDA GPU at sizes that fill tiles, chunks and grids; ignored without a device.</summary>
[Category("Gpu")]
public sealed class IlgpuCudaAgainstCpuTests : IlgpuAgainstCpuTests
{
    protected override Sizes Size { get; } = new([300, 1, 129, 64, 0, 511], new AttentionHeads(12, 2, 128), Rows: 517, Width: 256, Vocab: 5003,
        Gemm: (515, 261, 1029), SampleRows: 64, SampleVocab: 5000);

    protected override IlgpuBackend CreateIlgpu()
    {
        try
        {
            return IlgpuBackend.CreateCuda();
        }
        catch (BackendUnavailableException e)
        {
            Assert.Ignore($"no CUDA device for the Ilgpu backend: {e.Message}");
            throw;
        }
    }
}

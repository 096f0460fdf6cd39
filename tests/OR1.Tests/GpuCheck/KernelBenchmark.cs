using System.Globalization;
using OR1.Native;
using OR1.Native.Kernels;

namespace OR1.Tests.GpuCheck;

/// <summary>
/// Our side of the GPU check's kernel phase: every case of bench/compare/gpu_cases.json (the cases PyTorch's
/// gpu_kernels.py runs at the same shapes and dtypes) on a kernel backend, each timed as the median of several calls
/// after a warm-up, as <see cref="GpuCheckRecord"/>s with the rate under the counting the cases file states, and the
/// GEMMs that did not run on cuBLAS. A few of our own rows follow (the CUDA-core fp32 attention, top-k sampling) with
/// keys PyTorch does not have. Written against <see cref="KernelBackend"/> and a timer, so CI runs every case on the
/// emulator at shrunken shapes (<see cref="KernelCaseSpec.Shrunk"/>) and a lent GPU meets no untried code.
/// </summary>
public static class KernelBenchmark
{
    /// <summary>Times one call: CUDA events on a GPU (see <see cref="OR1.Native.Cuda.CudaBackend.TimeMilliseconds"/>).</summary>
    public delegate double Timer(Action call);

    public static IReadOnlyList<GpuCheckRecord> Run(KernelBackend backend, IReadOnlyList<KernelCaseSpec> cases, Timer time, int repeats,
        Action<string> log, bool ourExtras = true)
    {
        var records = new List<GpuCheckRecord>();
        foreach (var spec in ourExtras ? cases.Concat(Extras(cases)) : cases)
        {
            try
            {
                var before = backend.Counters;
                var record = Measure(backend, spec, call => Median(call, time, repeats));
                var used = backend.Counters - before;
                record = record with { Counters = new() { ["gemms"] = used.Gemms, ["builtin_gemms"] = used.BuiltinGemms, ["launches"] = used.Launches } };
                records.Add(record);
                log($"  {record.Key,-40} {Format(record)}");
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                records.Add(new GpuCheckRecord { Key = spec.Key, Side = "ours", Name = spec.Op, Shape = spec.ShapeText, Dtype = spec.Dtype, Error = e.Message });
                log($"  {spec.Key,-40} failed: {e.Message}");
            }
        }
        return records;
    }

    private static string Format(GpuCheckRecord r)
    {
        var ic = CultureInfo.InvariantCulture;
        string rate = r.Tflops is { } tf ? $"{tf.ToString("F1", ic)} TFLOP/s" : r.Gbps is { } gb ? $"{gb.ToString("F0", ic)} GB/s" : "";
        return $"{r.Ms!.Value.ToString("F3", ic)} ms  {rate}";
    }

    private static double Median(Action call, Timer time, int repeats)
    {
        time(call); // warm-up: kernels loaded, scratch sized, caches warm
        var samples = new double[repeats];
        for (int i = 0; i < repeats; i++) samples[i] = time(call);
        Array.Sort(samples);
        return repeats % 2 == 1 ? samples[repeats / 2] : 0.5 * (samples[repeats / 2 - 1] + samples[repeats / 2]);
    }

    /// <summary>The fp32 CUDA-core attention, top-k sampling and bf16 top-p sampling at the shapes of the cases they follow.</summary>
    private static IEnumerable<KernelCaseSpec> Extras(IReadOnlyList<KernelCaseSpec> cases)
    {
        foreach (var c in cases.Where(c => c.Op == "attention_forward").Take(1))
            yield return Rewritten(c, "dtype", "fp32");
        foreach (var c in cases.Where(c => c.Op == "sample").Take(1))
        {
            yield return Rewritten(Rewritten(c, "top_k", 50), "top_p", 1.0);
            yield return Rewritten(c, "dtype", "bf16");
        }
    }

    private static KernelCaseSpec Rewritten(KernelCaseSpec spec, string name, object value)
    {
        var fields = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, System.Text.Json.JsonElement>>(spec.Raw)!;
        fields[name] = System.Text.Json.JsonSerializer.SerializeToElement(value);
        fields["key"] = System.Text.Json.JsonSerializer.SerializeToElement($"{(spec.Key.StartsWith("ours/") ? "" : "ours/")}{spec.Key}/{name}={value}");
        return new KernelCaseSpec(System.Text.Json.JsonSerializer.SerializeToElement(fields));
    }

    private static DType Storage(KernelCaseSpec spec) => spec.Dtype == "fp32" ? DType.Float32 : DType.BFloat16;

    private static GpuCheckRecord Measure(KernelBackend gpu, KernelCaseSpec spec, Func<Action, double> median)
    {
        var owned = new List<IDisposable>();
        T Own<T>(T d) where T : IDisposable
        {
            owned.Add(d);
            return d;
        }
        Tensor Make(DType dtype, params int[] shape)
        {
            var t = Own(gpu.Allocate(dtype, new TensorShape(shape)));
            gpu.Fill(t, 0.01f);
            return t;
        }
        var storage = Storage(spec);
        var record = new GpuCheckRecord { Key = spec.Key, Side = "ours", Name = spec.Op, Shape = spec.ShapeText, Dtype = spec.Dtype };
        GpuCheckRecord Bandwidth(double ms, double bytes, string counting) =>
            record with { Ms = ms, Gbps = bytes / (ms * 1e-3) / 1e9, Counting = counting };
        GpuCheckRecord Compute(double ms, double flops, string counting) =>
            record with { Ms = ms, Tflops = flops / (ms * 1e-3) / 1e12, Counting = counting };
        try
        {
            switch (spec.Op)
            {
                case "copy":
                {
                    int n = (int)(spec.Long("bytes") / 2);
                    var a = Make(DType.BFloat16, n);
                    var b = Make(DType.BFloat16, n);
                    return Bandwidth(median(() => gpu.Copy(a, b)), 2.0 * n * 2, "bytes read + written");
                }
                case "attention_forward" or "attention_backward":
                {
                    var heads = new AttentionHeads(spec.Int("heads"), spec.Int("kv_heads"), spec.Int("head_dim"));
                    var lengths = Enumerable.Repeat(spec.Int("length"), spec.Int("sequences")).ToArray();
                    int n = lengths.Sum();
                    var seqs = Own(Segments.FromLengths(gpu, lengths));
                    var q = Make(storage, n, heads.QueryWidth);
                    var k = Make(storage, n, heads.KvWidth);
                    var v = Make(storage, n, heads.KvWidth);
                    var o = Make(storage, n, heads.QueryWidth);
                    var lse = Make(DType.Float32, n, heads.NumHeads);
                    gpu.AttentionForward(q, k, v, seqs, heads, heads.DefaultScale, o, lse);
                    string implementation = storage == DType.BFloat16 && heads.HeadDim % 8 == 0 ? "attention.cu (tensor cores)" : "attention_simt.cu (CUDA cores)";
                    if (spec.Op == "attention_forward")
                        return Compute(median(() => gpu.AttentionForward(q, k, v, seqs, heads, heads.DefaultScale, o, lse)),
                            KernelCost.AttentionForwardFlops(lengths, heads), "4 N^2 D H per sequence, halved (causal)") with { Implementation = implementation };
                    var dq = Make(storage, n, heads.QueryWidth);
                    var dk = Make(storage, n, heads.KvWidth);
                    var dv = Make(storage, n, heads.KvWidth);
                    return Compute(median(() => gpu.AttentionBackward(o, q, k, v, o, lse, seqs, heads, heads.DefaultScale, dq, dk, dv)),
                        KernelCost.AttentionBackwardFlops(lengths, heads), "2.5x the forward's") with { Implementation = implementation };
                }
                case "attention_decode":
                {
                    var heads = new AttentionHeads(spec.Int("heads"), spec.Int("kv_heads"), spec.Int("head_dim"));
                    int batch = spec.Int("batch"), cache = spec.Int("cache");
                    var q = Make(storage, batch, heads.QueryWidth);
                    var keys = Make(storage, batch, cache, heads.KvWidth);
                    var values = Make(storage, batch, cache, heads.KvWidth);
                    var slots = Own(gpu.Allocate(DType.Int32, new TensorShape(batch)));
                    gpu.Upload<int>(Enumerable.Range(0, batch).ToArray(), slots);
                    var lengths = Own(gpu.Allocate(DType.Int32, new TensorShape(batch)));
                    gpu.Upload<int>(Enumerable.Repeat(cache, batch).ToArray(), lengths);
                    var output = Make(storage, batch, heads.QueryWidth);
                    return Bandwidth(median(() => gpu.AttentionDecode(q, keys, values, slots, lengths, heads, heads.DefaultScale, output)),
                        2.0 * batch * cache * heads.KvWidth * storage.SizeOf(), "the cached K and V read once");
                }
                case "rmsnorm_forward" or "rmsnorm_backward":
                {
                    int rows = spec.Int("rows"), width = spec.Int("width");
                    var x = Make(storage, rows, width);
                    var w = Make(storage, width);
                    var y = Make(storage, rows, width);
                    var inv = Make(DType.Float32, rows);
                    gpu.RmsNormForward(x, w, 1e-6f, y, inv);
                    double matrix = (double)rows * width * storage.SizeOf();
                    if (spec.Op == "rmsnorm_forward")
                        return Bandwidth(median(() => gpu.RmsNormForward(x, w, 1e-6f, y, inv)), 2 * matrix, "x read, y written");
                    var dx = Make(storage, rows, width);
                    var dw = Make(DType.Float32, width);
                    return Bandwidth(median(() => gpu.RmsNormBackward(y, x, w, inv, dx, dw)), 3 * matrix, "dy and x read, dx written");
                }
                case "rope_forward":
                {
                    int rows = spec.Int("rows"), heads = spec.Int("heads"), headDim = spec.Int("head_dim");
                    var x = Make(storage, rows, heads * headDim);
                    var y = Make(storage, rows, heads * headDim);
                    var positions = Own(gpu.Allocate(DType.Int32, new TensorShape(rows)));
                    gpu.Upload<int>(Enumerable.Range(0, rows).ToArray(), positions);
                    return Bandwidth(median(() => gpu.RopeForward(x, positions, heads, headDim, 1e6f, y)),
                        2.0 * rows * heads * headDim * storage.SizeOf(), "x read, y written");
                }
                case "swiglu_forward" or "swiglu_backward":
                {
                    int rows = spec.Int("rows"), width = spec.Int("width");
                    var gate = Make(storage, rows, width);
                    var up = Make(storage, rows, width);
                    var output = Make(storage, rows, width);
                    double matrix = (double)rows * width * storage.SizeOf();
                    if (spec.Op == "swiglu_forward")
                        return Bandwidth(median(() => gpu.SwiGluForward(gate, up, output)), 3 * matrix, "gate and up read, output written");
                    var dGate = Make(storage, rows, width);
                    var dUp = Make(storage, rows, width);
                    return Bandwidth(median(() => gpu.SwiGluBackward(output, gate, up, dGate, dUp)), 5 * matrix, "dOut, gate, up read, dGate, dUp written");
                }
                case "adamw":
                {
                    var slots = spec.Shapes("parameters").Select(shape => new AdamWSlot(Make(DType.Float32, shape), Make(DType.Float32, shape),
                        Make(DType.Float32, shape), Make(DType.Float32, shape), WorkingCopy: Make(DType.BFloat16, shape))).ToArray();
                    long elements = slots.Sum(s => s.Parameter.ElementCount);
                    return Bandwidth(median(() => gpu.AdamWStep(slots, new AdamWOptions(1e-6), 1, 1f)), 30.0 * elements,
                        "parameter, gradient, two moments read (16 B), three written (12 B), bf16 working copy written (2 B)");
                }
                case "logprob_forward" or "logprob_backward":
                {
                    int rows = spec.Int("rows"), hidden = spec.Int("hidden"), vocab = spec.Int("vocab");
                    var h = Make(storage, rows, hidden);
                    var lm = Make(storage, vocab, hidden);
                    var targets = Own(gpu.Allocate(DType.Int32, new TensorShape(rows)));
                    var logp = Make(DType.Float32, rows);
                    var entropy = Make(DType.Float32, rows);
                    var lse = Make(DType.Float32, rows);
                    gpu.LogProbForward(h, lm, targets, 1f, logp, entropy, lse);
                    var plan = gpu.PlanLogProb(rows, vocab, hidden, storage);
                    if (spec.Op == "logprob_forward")
                        return Compute(median(() => gpu.LogProbForward(h, lm, targets, 1f, logp, entropy, lse)),
                            KernelCost.LogProbForwardFlops(rows, hidden, vocab), "2 M N K of the logits GEMM") with { Implementation = plan.ToString() };
                    var dLogp = Make(DType.Float32, rows);
                    var dHidden = Make(storage, rows, hidden);
                    var dWeight = Make(DType.Float32, vocab, hidden);
                    return Compute(median(() => gpu.LogProbBackward(dLogp, dLogp, h, lm, targets, 1f, entropy, lse, dHidden, dWeight)),
                        KernelCost.LogProbBackwardFlops(rows, hidden, vocab), "3 GEMMs of 2 M N K (logits recomputed, dHidden, dWeight)") with { Implementation = plan.ToString() };
                }
                case "gemm":
                {
                    int m = spec.Int("m"), n = spec.Int("n"), k = spec.Int("k");
                    var a = Make(storage, m, k);
                    var b = Make(storage, n, k); // a weight [out, in], as the model's projections
                    var c = Make(storage, m, n);
                    return Compute(median(() => gpu.MatMul(a, false, b, true, c)), KernelCost.MatMulFlops(m, n, k), "2 M N K") with
                    {
                        Implementation = "MatMul (cuBLAS where the backend has it)",
                    };
                }
                case "sample":
                {
                    int batch = spec.Int("batch"), vocab = spec.Int("vocab");
                    var logits = Own(gpu.Allocate(DType.Float32, new TensorShape(batch, vocab)));
                    var values = new float[batch * vocab];
                    var random = new Random(5);
                    for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 12 - 6);
                    gpu.Upload<float>(values, logits);
                    if (storage == DType.BFloat16)
                    {
                        var stored = Own(gpu.Allocate(DType.BFloat16, new TensorShape(batch, vocab)));
                        gpu.Convert(logits, stored);
                        logits = stored;
                    }
                    var tokens = Own(gpu.Allocate(DType.Int32, new TensorShape(batch)));
                    var sampled = Make(DType.Float32, batch);
                    var options = new SamplingOptions(spec.Float("temperature"), spec.Float("top_p"), spec.Int("top_k"));
                    return Bandwidth(median(() => gpu.Sample(logits, options, 1, 2, tokens, sampled)), (double)batch * vocab * logits.DType.SizeOf(), "the logits read once");
                }
                default:
                    return record with { Skipped = $"op '{spec.Op}' is not one this check knows" };
            }
        }
        finally
        {
            foreach (var d in owned) d.Dispose();
        }
    }
}

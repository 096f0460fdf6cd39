using System.Globalization;
using System.Text;
using OR1.Native;
using OR1.Native.Cuda;

namespace OR1.Tests.GpuCheck;

/// <summary>
/// A short benchmark of the CUDA kernels, timed with CUDA events (mean of several launches after a
/// warm-up). Memory-bound ops report GB/s (bytes read + written) against the H200's 4.8 TB/s;
/// attention reports TFLOP/s with FlashAttention's counting (forward 4 N^2 D H per sequence, halved
/// when causal; backward 2.5 times the forward); GEMM-shaped ops report TFLOP/s (2 M N K).
/// Sizes are a few hundred MB per tensor: well past the 60 MB L2, well under the device memory.
/// </summary>
public static class KernelBenchmark
{
    private const double PeakBandwidth = 4.8e12;

    private sealed record Row(string Op, string Shape, double Milliseconds, double Bytes, double Flops)
    {
        public double GBs => Bytes / (Milliseconds * 1e-3) / 1e9;
        public double TFlops => Flops / (Milliseconds * 1e-3) / 1e12;
    }

    public static void Run(string outDir, bool quick = false)
    {
        using var gpu = new CudaBackend();
        var rows = new List<Row>();
        int repeats = quick ? 3 : 10;
        float Time(Action op)
        {
            op();
            gpu.Synchronize();
            return gpu.TimeMilliseconds(() =>
            {
                for (int i = 0; i < repeats; i++) op();
            }) / repeats;
        }

        // ---- memory-bound, 64 M floats (256 MB) per tensor
        long n = quick ? 16L << 20 : 64L << 20;
        int rowsN = (int)(n / 4096), width = 4096;
        using (var a = gpu.Allocate(DType.Float32, new TensorShape(rowsN, width)))
        using (var b = gpu.Allocate(DType.Float32, new TensorShape(rowsN, width)))
        using (var c = gpu.Allocate(DType.Float32, new TensorShape(rowsN, width)))
        using (var d = gpu.Allocate(DType.Float32, new TensorShape(rowsN, width)))
        using (var w = gpu.Allocate(DType.Float32, new TensorShape(width)))
        using (var inv = gpu.Allocate(DType.Float32, new TensorShape(rowsN)))
        using (var pos = gpu.Allocate(DType.Int32, new TensorShape(rowsN)))
        {
            gpu.Fill(a, 0.5f);
            gpu.Fill(b, 0.25f);
            gpu.Fill(w, 1f);
            string shape = $"[{rowsN}, {width}]";
            rows.Add(new("Copy", shape, Time(() => gpu.Copy(a, c)), 2.0 * n * 4, 0));
            rows.Add(new("Fill", shape, Time(() => gpu.Fill(c, 1f)), 1.0 * n * 4, 0));
            rows.Add(new("Add", shape, Time(() => gpu.Add(a, b, c)), 3.0 * n * 4, 0));
            rows.Add(new("Scale", shape, Time(() => gpu.Scale(c, 0.999f)), 2.0 * n * 4, 0));
            rows.Add(new("SwiGluForward", shape, Time(() => gpu.SwiGluForward(a, b, c)), 3.0 * n * 4, 0));
            rows.Add(new("SwiGluBackward", shape, Time(() => gpu.SwiGluBackward(c, a, b, d, c)), 5.0 * n * 4, 0));
            rows.Add(new("RmsNormForward", shape, Time(() => gpu.RmsNormForward(a, w, 1e-6f, c, inv)), 2.0 * n * 4, 0));
            rows.Add(new("RopeForward (32 heads x 128)", shape, Time(() => gpu.RopeForward(a, pos, 32, 128, 1e6f, c)), 2.0 * n * 4, 0));
            rows.Add(new("GlobalNorm", shape, Time(() => gpu.GlobalNorm([a])), 1.0 * n * 4, 0));
            using var gradient = gpu.Allocate(DType.Float32, new TensorShape(rowsN, width));
            var slot = new AdamWSlot(c, a, b, d);
            rows.Add(new("AdamWStep", shape, Time(() => gpu.AdamWStep([slot], new AdamWOptions(1e-6), 1, 1f)), 7.0 * n * 4, 0));
        }

        // ---- attention: the fp32 CUDA-core kernels (attention_simt.cu) and the bf16 tensor-core kernels (attention.cu) at
        // 4 sequences of 4096 (2048 in quick mode), 28 query heads over 4 kv heads, head dim 128; and the bf16 kernels at
        // the tensor-core issue's target: one causal sequence of 16K tokens, 12 query heads over 2 kv heads, head dim 128.
        int seqLen = quick ? 2048 : 4096;
        Attention(DType.Float32, seqLen, 4, new AttentionHeads(28, 4, 128));
        Attention(DType.BFloat16, seqLen, 4, new AttentionHeads(28, 4, 128));
        Attention(DType.BFloat16, quick ? 8192 : 16384, 1, new AttentionHeads(12, 2, 128));

        void Attention(DType storage, int length, int sequences, AttentionHeads heads)
        {
            int tokens = length * sequences;
            var lengths = Enumerable.Repeat(length, sequences).ToArray();
            using var seqs = Segments.FromLengths(gpu, lengths);
            using var q = gpu.Allocate(storage, new TensorShape(tokens, heads.QueryWidth));
            using var k = gpu.Allocate(storage, new TensorShape(tokens, heads.KvWidth));
            using var v = gpu.Allocate(storage, new TensorShape(tokens, heads.KvWidth));
            using var o = gpu.Allocate(storage, new TensorShape(tokens, heads.QueryWidth));
            using var lse = gpu.Allocate(DType.Float32, new TensorShape(tokens, heads.NumHeads));
            using var dO = gpu.Allocate(storage, new TensorShape(tokens, heads.QueryWidth));
            using var dq = gpu.Allocate(storage, new TensorShape(tokens, heads.QueryWidth));
            using var dk = gpu.Allocate(storage, new TensorShape(tokens, heads.KvWidth));
            using var dv = gpu.Allocate(storage, new TensorShape(tokens, heads.KvWidth));
            gpu.Fill(q, 0.01f);
            gpu.Fill(k, 0.02f);
            gpu.Fill(v, 0.03f);
            gpu.Fill(dO, 0.01f);
            string shape = $"{sequences} x {length}, {heads.NumHeads}/{heads.NumKvHeads} heads, d {heads.HeadDim}, causal, " +
                           (storage == DType.BFloat16 ? "bf16 (tensor cores)" : "fp32 (CUDA cores)");
            rows.Add(new("AttentionForward", shape, Time(() => gpu.AttentionForward(q, k, v, seqs, heads, heads.DefaultScale, o, lse)), 0,
                KernelCost.AttentionForwardFlops(lengths, heads)));
            rows.Add(new("AttentionBackward", shape, Time(() => gpu.AttentionBackward(dO, q, k, v, o, lse, seqs, heads, heads.DefaultScale, dq, dk, dv)), 0,
                KernelCost.AttentionBackwardFlops(lengths, heads)));
        }

        // ---- GEMM (cuBLAS fp32) and the chunked log-prob (Qwen2-7B's hidden and vocabulary sizes)
        int m = quick ? 2048 : 4096;
        using (var x = gpu.Allocate(DType.Float32, new TensorShape(m, m)))
        using (var y = gpu.Allocate(DType.Float32, new TensorShape(m, m)))
        using (var z = gpu.Allocate(DType.Float32, new TensorShape(m, m)))
        {
            gpu.Fill(x, 0.001f);
            gpu.Fill(y, 0.001f);
            rows.Add(new("MatMul (cuBLAS sgemm)", $"{m}^3", Time(() => gpu.MatMul(x, false, y, true, z)), 0, KernelCost.MatMulFlops(m, m, m)));
        }
        int lpRows = quick ? 512 : 2048, hidden = 3584, vocab = 152064;
        using (var h = gpu.Allocate(DType.Float32, new TensorShape(lpRows, hidden)))
        using (var lm = gpu.Allocate(DType.Float32, new TensorShape(vocab, hidden)))
        using (var targets = gpu.Allocate(DType.Int32, new TensorShape(lpRows)))
        using (var lp = gpu.Allocate(DType.Float32, new TensorShape(lpRows)))
        using (var ent = gpu.Allocate(DType.Float32, new TensorShape(lpRows)))
        using (var lse = gpu.Allocate(DType.Float32, new TensorShape(lpRows)))
        {
            gpu.Fill(h, 0.01f);
            gpu.Fill(lm, 0.01f);
            rows.Add(new("LogProbForward", $"{lpRows} x {hidden} -> {vocab}", Time(() => gpu.LogProbForward(h, lm, targets, 1f, lp, ent, lse)), 0,
                KernelCost.LogProbForwardFlops(lpRows, hidden, vocab)));
        }
        using (var logits = gpu.Allocate(DType.Float32, new TensorShape(64, 152064)))
        using (var tok = gpu.Allocate(DType.Int32, new TensorShape(64)))
        using (var tlp = gpu.Allocate(DType.Float32, new TensorShape(64)))
        {
            gpu.Fill(logits, 0.5f);
            rows.Add(new("Sample (T = 1)", "64 x 152064", Time(() => gpu.Sample(logits, new SamplingOptions(), 1, 2, tok, tlp)), 64.0 * 152064 * 4 * 2, 0));
            // Filtered sampling on uniform logits in [-8, 8) (a nucleus of about 19% of the vocabulary at top-p 0.95): the
            // radix select's passes, in fp32 and bf16 storage. GB/s counts one read of the logits.
            var random = new Random(7);
            var values = new float[64 * 152064];
            for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 16 - 8);
            gpu.Upload<float>(values, logits);
            using var stored = gpu.Allocate(DType.BFloat16, new TensorShape(64, 152064));
            gpu.Convert(logits, stored);
            rows.Add(new("Sample top-p 0.95", "64 x 152064", Time(() => gpu.Sample(logits, new SamplingOptions(1f, 0.95f), 1, 2, tok, tlp)), 64.0 * 152064 * 4, 0));
            rows.Add(new("Sample top-k 50, top-p 0.95", "64 x 152064", Time(() => gpu.Sample(logits, new SamplingOptions(1f, 0.95f, 50), 1, 2, tok, tlp)), 64.0 * 152064 * 4, 0));
            rows.Add(new("Sample top-p 0.95, bf16", "64 x 152064", Time(() => gpu.Sample(stored, new SamplingOptions(1f, 0.95f), 1, 2, tok, tlp)), 64.0 * 152064 * 2, 0));
        }

        var table = new StringBuilder();
        table.AppendLine($"Device: {gpu.Description}");
        table.AppendLine();
        table.AppendLine("| op | shape | ms | GB/s | % of 4.8 TB/s | TFLOP/s |");
        table.AppendLine("| --- | --- | ---: | ---: | ---: | ---: |");
        var csv = new StringBuilder("op,shape,ms,GBps,percent_of_peak_bandwidth,TFLOPs\n");
        var ic = CultureInfo.InvariantCulture;
        foreach (var r in rows)
        {
            string gbs = r.Bytes > 0 ? r.GBs.ToString("F0", ic) : "";
            string pct = r.Bytes > 0 ? (100 * r.Bytes / (r.Milliseconds * 1e-3) / PeakBandwidth).ToString("F0", ic) : "";
            string tf = r.Flops > 0 ? r.TFlops.ToString("F1", ic) : "";
            table.AppendLine($"| {r.Op} | {r.Shape} | {r.Milliseconds.ToString("F3", ic)} | {gbs} | {pct} | {tf} |");
            csv.AppendLine($"\"{r.Op}\",\"{r.Shape}\",{r.Milliseconds.ToString("F4", ic)},{gbs},{pct},{tf}");
        }
        Console.WriteLine();
        Console.Write(table);
        File.WriteAllText(Path.Combine(outDir, "kernel-benchmark.md"), table.ToString());
        File.WriteAllText(Path.Combine(outDir, "kernel-benchmark.csv"), csv.ToString());
    }
}

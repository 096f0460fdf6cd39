namespace OR1.Bench;

/// <summary>
/// How much work one launch does on a class of backend. Widths always come from the model shape; what
/// scales is the token count: memory-bound kernels get as many rows as fit <see cref="TrafficBytes"/> of
/// reads plus writes (far past the caches, so DRAM or HBM bandwidth is what is measured), and the
/// compute-bound ones a token count that keeps one launch between milliseconds and a fraction of a
/// second. The GPU row is a real training micro-batch; the CPU row is scaled down to what two cores
/// finish; the simulator row is tiny because every simulated GPU thread costs a host thread switch.
/// </summary>
/// <param name="Name">gpu, cpu or simulator.</param>
/// <param name="TrafficBytes">Bytes read plus written by one launch of a memory-bound kernel.</param>
/// <param name="GemmRows">Tokens (M) of a linear layer.</param>
/// <param name="Sequences">Packed sequences in an attention batch.</param>
/// <param name="SequenceLength">Tokens per packed sequence.</param>
/// <param name="LogProbRows">Tokens through the fused LM-head log-prob.</param>
/// <param name="SampleRows">Rows of logits sampled at once (the generation batch).</param>
/// <param name="DecodeRows">Sequences in a decode step.</param>
/// <param name="DecodeLength">KV-cache length each decode row attends to.</param>
public sealed record BenchScale(
    string Name, long TrafficBytes, int GemmRows, int Sequences, int SequenceLength,
    int LogProbRows, int SampleRows, int DecodeRows, int DecodeLength)
{
    public static readonly BenchScale Gpu = new("gpu", 1L << 30, 8192, 4, 4096, 4096, 256, 64, 4096);
    public static readonly BenchScale Cpu = new("cpu", 128L << 20, 256, 2, 512, 32, 16, 16, 1024);
    public static readonly BenchScale Simulator = new("simulator", 64L << 10, 16, 2, 16, 4, 2, 2, 16);

    /// <summary>The scale a backend (by <see cref="OR1.Native.Backends"/> name) runs at.</summary>
    public static BenchScale For(string backend) => backend switch
    {
        "cuda" or "ilgpu-cuda" => Gpu,
        "cpu" => Cpu,
        _ => Simulator,
    };

    /// <summary>Rows such that rows x <paramref name="bytesPerRow"/> is about <see cref="TrafficBytes"/> (at least 1).</summary>
    public int RowsFor(long bytesPerRow) => (int)Math.Clamp(TrafficBytes / Math.Max(1, bytesPerRow), 1, 1 << 24);
}

namespace OR1.Native.Distributed;

/// <summary>The world of one process: every collective is the identity (and checks its sizes as the others do).</summary>
public sealed class SingleProcess : ICollectives
{
    public static SingleProcess Instance { get; } = new();

    public int Rank => 0;
    public int WorldSize => 1;
    public string Description => "single process";

    public void AllReduceSum(Span<float> buffer) { }
    public void AllReduceSum(Span<double> values) { }
    public void AllReduceMax(Span<double> values) { }

    public void ReduceScatterSum(ReadOnlySpan<float> input, Span<float> output)
    {
        Collectives.CheckScatter(input.Length, output.Length, 1, 0);
        input.CopyTo(output);
    }

    public void ReduceSum(ReadOnlySpan<float> input, Span<float> output, int root)
    {
        Collectives.CheckReduce(input.Length, output.Length, root, 1, 0);
        input.CopyTo(output);
    }

    public bool AnyThread => true;

    public void AllGather(ReadOnlySpan<float> input, Span<float> output)
    {
        Collectives.CheckGather(input.Length, output.Length, 1, 0);
        input.CopyTo(output);
    }

    public void Broadcast(Span<byte> buffer, int root) => Collectives.CheckRoot(root, 1);
    public void Barrier() { }

    public void Abort(int code) => Environment.Exit(code);
    public void Dispose() { }
}

using OR1.Native.Distributed;

namespace OR1.Tests.Distributed;

/// <summary>
/// Rank 0 of a world of two whose other rank holds the same values: a sum over the ranks doubles (exactly, in floating
/// point), a maximum is the value itself. Records every float collective (its thread, length and root) and can run a
/// callback before each, to block or fail it. For in-process tests of the gradients' sum; the other collectives refuse.
/// </summary>
internal sealed class TwinWorld : ICollectives
{
    public readonly record struct Call(int Thread, int Length, int Root);

    private readonly List<Call> _calls = [];

    /// <summary>Runs before each float collective, with the number of calls before it.</summary>
    public Action<int>? BeforeCall { get; set; }

    public IReadOnlyList<Call> Calls
    {
        get
        {
            lock (_calls) return _calls.ToArray();
        }
    }

    public int Rank => 0;
    public int WorldSize => 2;
    public string Description => "twin (in-process test world)";
    public bool AnyThread { get; init; } = true;

    private void Record(int length, int root)
    {
        int before;
        lock (_calls) before = _calls.Count;
        BeforeCall?.Invoke(before);
        lock (_calls) _calls.Add(new Call(Environment.CurrentManagedThreadId, length, root));
    }

    public void AllReduceSum(Span<float> buffer)
    {
        Record(buffer.Length, -1);
        foreach (ref float v in buffer) v *= 2;
    }

    public void ReduceSum(ReadOnlySpan<float> input, Span<float> output, int root)
    {
        Record(input.Length, root);
        if (root != 0)
        {
            Assert.That(output.Length, Is.Zero, "a rank that is not the root passes no output");
            return;
        }
        Assert.That(output.Length, Is.EqualTo(input.Length));
        for (int i = 0; i < input.Length; i++) output[i] = 2 * input[i];
    }

    public void AllReduceSum(Span<double> values)
    {
        foreach (ref double v in values) v *= 2;
    }

    public void AllReduceMax(Span<double> values) { }

    public void ReduceScatterSum(ReadOnlySpan<float> input, Span<float> output) => throw new NotSupportedException("not used by these tests");
    public void AllGather(ReadOnlySpan<float> input, Span<float> output) => throw new NotSupportedException("not used by these tests");
    public void Broadcast(Span<byte> buffer, int root) => throw new NotSupportedException("not used by these tests");
    public void Barrier() { }
    public void Abort(int code) => throw new InvalidOperationException($"abort({code})");
    public void Dispose() { }
}

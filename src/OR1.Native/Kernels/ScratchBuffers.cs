namespace OR1.Native.Kernels;

/// <summary>
/// Grow-only device scratch of the launchers (logit tiles, statistics, tables, flags), one buffer per
/// purpose. Buffers are reused across ops: every op is ordered on the runtime's one stream, so an op
/// never overwrites scratch that an earlier op still reads.
/// </summary>
internal sealed class ScratchBuffers(IKernelRuntime runtime) : IDisposable
{
    public enum Slot { Flag, Stats, Tile, HiddenGradient, Table, NormTable, Partials, ColumnPartials, AttentionDi, DecodePartials, Count }

    private readonly nint[] _pointers = new nint[(int)Slot.Count];
    private readonly long[] _sizes = new long[(int)Slot.Count];

    /// <summary>How many times a buffer was (re)allocated: a device graph that captured the old address is stale.</summary>
    public long Epoch { get; private set; }

    /// <summary>A buffer of at least <paramref name="bytes"/> bytes for <paramref name="slot"/>.</summary>
    public nint Get(Slot slot, long bytes)
    {
        int i = (int)slot;
        if (_sizes[i] < bytes)
        {
            if (_pointers[i] != 0) runtime.Free(_pointers[i]);
            _pointers[i] = 0;
            long size = Math.Max(bytes, Math.Max(256, _sizes[i] * 2));
            _pointers[i] = runtime.Allocate(size);
            _sizes[i] = size;
            Epoch++;
        }
        return _pointers[i];
    }

    public void Dispose()
    {
        for (int i = 0; i < _pointers.Length; i++)
        {
            if (_pointers[i] != 0) runtime.Free(_pointers[i]);
            _pointers[i] = 0;
            _sizes[i] = 0;
        }
    }
}

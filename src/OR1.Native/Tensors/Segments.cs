namespace OR1.Native;

/// <summary>
/// Contiguous segments of a packed dimension, described by offsets [Count + 1] with Offsets[0] = 0:
/// the sequences of a packed micro-batch (segments of tokens) or the groups of a GRPO batch
/// (segments of responses). The offsets are kept both on the host (for shape checks and launch
/// planning) and in an Int32 tensor on the backend (for kernels), so ops never copy them implicitly.
/// </summary>
public sealed class Segments : IDisposable
{
    private readonly int[] _offsets;

    private Segments(int[] offsets, Tensor deviceOffsets)
    {
        _offsets = offsets;
        DeviceOffsets = deviceOffsets;
        int max = 0;
        for (int i = 0; i < offsets.Length - 1; i++) max = Math.Max(max, offsets[i + 1] - offsets[i]);
        MaxLength = max;
    }

    /// <summary>Offsets on the host: segment i covers [Offsets[i], Offsets[i + 1]).</summary>
    public ReadOnlySpan<int> Offsets => _offsets;

    /// <summary>The host offsets array itself, for kernels that capture it in parallel jobs (never mutate it).</summary>
    internal int[] OffsetArray => _offsets;

    /// <summary>The same offsets as an Int32 tensor of shape [Count + 1] on the backend.</summary>
    public Tensor DeviceOffsets { get; }

    /// <summary>Number of segments.</summary>
    public int Count => _offsets.Length - 1;

    /// <summary>Total length of all segments (the packed dimension's size).</summary>
    public int Total => _offsets[^1];

    /// <summary>Length of the longest segment.</summary>
    public int MaxLength { get; }

    /// <summary>Start of segment <paramref name="index"/>.</summary>
    public int Start(int index) => _offsets[index];

    /// <summary>Length of segment <paramref name="index"/>.</summary>
    public int Length(int index) => _offsets[index + 1] - _offsets[index];

    /// <summary>Builds segments from their lengths (each non-negative) and uploads the offsets.</summary>
    public static Segments FromLengths(IBackend backend, ReadOnlySpan<int> lengths)
    {
        ArgumentNullException.ThrowIfNull(backend);
        var offsets = new int[lengths.Length + 1];
        long total = 0;
        for (int i = 0; i < lengths.Length; i++)
        {
            if (lengths[i] < 0)
                throw new ArgumentException($"segment {i} has length {lengths[i]}; lengths must be non-negative", nameof(lengths));
            total += lengths[i];
            if (total > int.MaxValue)
                throw new ArgumentException($"segment lengths add up to more than {int.MaxValue}", nameof(lengths));
            offsets[i + 1] = (int)total;
        }
        return Upload(backend, offsets);
    }

    /// <summary>Builds segments from offsets [Count + 1]: first 0, never decreasing.</summary>
    public static Segments FromOffsets(IBackend backend, ReadOnlySpan<int> offsets)
    {
        ArgumentNullException.ThrowIfNull(backend);
        if (offsets.Length < 1)
            throw new ArgumentException("offsets need at least one element (the leading 0)", nameof(offsets));
        if (offsets[0] != 0)
            throw new ArgumentException($"offsets must start at 0, got {offsets[0]}", nameof(offsets));
        for (int i = 1; i < offsets.Length; i++)
        {
            if (offsets[i] < offsets[i - 1])
                throw new ArgumentException($"offsets must not decrease: offsets[{i}] = {offsets[i]} < offsets[{i - 1}] = {offsets[i - 1]}", nameof(offsets));
        }
        return Upload(backend, offsets.ToArray());
    }

    private static Segments Upload(IBackend backend, int[] offsets)
    {
        var device = backend.Allocate(DType.Int32, new TensorShape(offsets.Length), "segment offsets");
        backend.Upload<int>(offsets, device);
        return new Segments(offsets, device);
    }

    /// <summary>Frees the device copy of the offsets.</summary>
    public void Dispose() => DeviceOffsets.Dispose();

    /// <inheritdoc />
    public override string ToString() => $"{Count} segments, {Total} in total, longest {MaxLength}";
}

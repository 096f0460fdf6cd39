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
        return Upload(backend, OffsetsOf(lengths));
    }

    /// <summary>
    /// Builds segments from their lengths (each non-negative) whose device offsets live in the first Count + 1
    /// elements of <paramref name="offsetStorage"/>, an Int32 vector the caller owns and reuses: the offsets are
    /// uploaded into it and nothing is allocated on the device (a micro-batch loop must not allocate); disposing the
    /// result leaves the storage alone. The next call over the same storage overwrites it, which is safe for work
    /// already issued with these offsets: the upload is ordered after that work.
    /// </summary>
    public static Segments FromLengths(ReadOnlySpan<int> lengths, Tensor offsetStorage) =>
        UploadInto(offsetStorage, OffsetsOf(lengths), nameof(offsetStorage));

    /// <summary>
    /// Builds segments from offsets [Count + 1] (first 0, never decreasing) into caller-owned device storage, as
    /// <see cref="FromLengths(ReadOnlySpan{int}, Tensor)"/> does: no device allocation, disposing leaves the storage alone.
    /// </summary>
    public static Segments FromOffsets(ReadOnlySpan<int> offsets, Tensor offsetStorage)
    {
        CheckOffsets(offsets);
        return UploadInto(offsetStorage, offsets.ToArray(), nameof(offsetStorage));
    }

    private static int[] OffsetsOf(ReadOnlySpan<int> lengths)
    {
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
        return offsets;
    }

    /// <summary>Builds segments from offsets [Count + 1]: first 0, never decreasing.</summary>
    public static Segments FromOffsets(IBackend backend, ReadOnlySpan<int> offsets)
    {
        ArgumentNullException.ThrowIfNull(backend);
        CheckOffsets(offsets);
        return Upload(backend, offsets.ToArray());
    }

    private static void CheckOffsets(ReadOnlySpan<int> offsets)
    {
        if (offsets.Length < 1)
            throw new ArgumentException("offsets need at least one element (the leading 0)", nameof(offsets));
        if (offsets[0] != 0)
            throw new ArgumentException($"offsets must start at 0, got {offsets[0]}", nameof(offsets));
        for (int i = 1; i < offsets.Length; i++)
        {
            if (offsets[i] < offsets[i - 1])
                throw new ArgumentException($"offsets must not decrease: offsets[{i}] = {offsets[i]} < offsets[{i - 1}] = {offsets[i - 1]}", nameof(offsets));
        }
    }

    private static Segments Upload(IBackend backend, int[] offsets)
    {
        var device = backend.Allocate(DType.Int32, new TensorShape(offsets.Length), "segment offsets");
        backend.Upload<int>(offsets, device);
        return new Segments(offsets, device);
    }

    private static Segments UploadInto(Tensor storage, int[] offsets, string argument)
    {
        ArgumentNullException.ThrowIfNull(storage, argument);
        if (storage.DType != DType.Int32 || storage.Rank != 1 || storage.ElementCount < offsets.Length)
            throw new ArgumentException(
                $"{storage.Describe()} cannot hold the {offsets.Length} offsets of {offsets.Length - 1} segments; it must be an Int32 vector of at least that many elements", argument);
        // A view: Tensor.Dispose frees only tensors that own their buffer, so Dispose of these segments frees nothing.
        var device = storage.SliceRows(0, offsets.Length);
        storage.Backend.Upload<int>(offsets, device);
        return new Segments(offsets, device);
    }

    /// <summary>Frees the device copy of the offsets (nothing when it lives in caller-owned storage).</summary>
    public void Dispose() => DeviceOffsets.Dispose();

    /// <inheritdoc />
    public override string ToString() => $"{Count} segments, {Total} in total, longest {MaxLength}";
}

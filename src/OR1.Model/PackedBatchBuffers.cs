using System.Diagnostics;
using OR1.Native;

namespace OR1.Model;

/// <summary>
/// Grow-only device buffers of a packed batch: token ids, positions and sequence offsets. <see cref="Load"/> checks
/// the token ids on the host, fills the positions, uploads into views of the buffers and returns a
/// <see cref="PackedBatch"/> over them, so a training or generation loop allocates device memory only when a batch is
/// larger than every earlier one (never in steady state), unlike <see cref="PackedBatch.Create"/>.
/// </summary>
public sealed class PackedBatchBuffers : IDisposable
{
    private readonly IBackend _backend;
    private readonly int _vocabSize;
    private int[] _hostPositions = [];
    private Tensor? _tokens, _positions, _offsets;

    /// <param name="backend">Where the buffers live.</param>
    /// <param name="vocabSize">Token ids must be in [0, vocabSize); int.MaxValue checks only that they are non-negative.</param>
    public PackedBatchBuffers(IBackend backend, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, 1);
        _backend = backend;
        _vocabSize = vocabSize;
    }

    /// <summary>Tokens the buffers hold now (and sequences: every sequence has at least one token).</summary>
    public int Capacity { get; private set; }

    /// <summary>
    /// Grows the buffers to at least <paramref name="tokens"/> tokens (by half again at least, so a slowly growing
    /// batch reallocates rarely). Batches returned earlier become invalid when this reallocates.
    /// </summary>
    public void Reserve(int tokens)
    {
        if (tokens <= Capacity) return;
        DisposeTensors();
        int capacity = (int)Math.Min(int.MaxValue - 1, Math.Max(tokens, Capacity + (long)Capacity / 2));
        _hostPositions = new int[capacity];
        _tokens = _backend.Allocate(DType.Int32, new TensorShape(capacity), "packed tokens");
        _positions = _backend.Allocate(DType.Int32, new TensorShape(capacity), "packed positions");
        _offsets = _backend.Allocate(DType.Int32, new TensorShape(capacity + 1), "packed sequence offsets");
        Capacity = capacity;
    }

    /// <summary>
    /// Uploads <paramref name="tokens"/>, packed sequences of <paramref name="lengths"/> tokens each (at least one),
    /// and returns the batch over views of the buffers: valid until the next Load or <see cref="Reserve"/>; disposing
    /// it frees nothing.
    /// </summary>
    /// <exception cref="ArgumentException">A token id outside the vocabulary (its position and value), an empty
    /// sequence, or lengths that do not add up to the tokens; nothing was uploaded.</exception>
    public PackedBatch Load(ReadOnlySpan<int> tokens, ReadOnlySpan<int> lengths)
    {
        if (lengths.IsEmpty) throw new ArgumentException("a batch needs at least one sequence", nameof(lengths));
        long total = 0;
        for (int s = 0; s < lengths.Length; s++)
        {
            if (lengths[s] < 1) throw new ArgumentException($"sequence {s} has length {lengths[s]}; every sequence needs at least one token", nameof(lengths));
            total += lengths[s];
        }
        if (total != tokens.Length)
            throw new ArgumentException($"the sequence lengths add up to {total} tokens, but {tokens.Length} tokens were given", nameof(lengths));
        TokenIds.RequireInVocabulary(tokens, _vocabSize, nameof(tokens));

        int n = tokens.Length;
        Reserve(n);
        Span<int> positions = _hostPositions.AsSpan(0, n);
        for (int s = 0, at = 0; s < lengths.Length; s++)
            for (int p = 0; p < lengths[s]; p++, at++) positions[at] = p;
        Debug.Assert(positions.IndexOfAnyInRange(int.MinValue, -1) < 0, "positions are generated non-negative");
        var tokenView = _tokens!.SliceRows(0, n);
        var positionView = _positions!.SliceRows(0, n);
        _backend.Upload(tokens, tokenView);
        _backend.Upload<int>(positions, positionView);
        return PackedBatch.View(tokenView, positionView, Segments.FromLengths(lengths, _offsets!));
    }

    private void DisposeTensors()
    {
        _tokens?.Dispose();
        _positions?.Dispose();
        _offsets?.Dispose();
    }

    public void Dispose() => DisposeTensors();
}

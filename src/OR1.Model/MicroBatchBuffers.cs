using OR1.Native;

namespace OR1.Model;

/// <summary>
/// The device buffers of a trainer's micro-batches, allocated once for the largest micro-batch seen and reused by
/// every later one: tokens, positions and next-token targets (filled by <see cref="Load"/> from a
/// <see cref="ResponseBatch"/>), and per-token float buffers for the loss (weights, advantages, old, current and
/// reference log-probs, entropies, and their gradients), which the caller fills. They grow when a longer micro-batch
/// comes (a long sequence goes alone), never shrink; the sequence offsets live in them too, so a micro-batch costs
/// uploads and no device allocation. Token ids (and so the targets) are checked on the host before anything is uploaded.
/// </summary>
public sealed class MicroBatchBuffers : IDisposable
{
    private readonly IBackend _backend;
    private readonly int _vocabSize;
    private readonly PackedBatchBuffers _packed;
    private int[] _hostLengths = [];
    private Tensor? _targets;
    private readonly Tensor?[] _floats = new Tensor?[FloatBufferCount];

    private const int FloatBufferCount = 8;

    /// <summary>Buffers that refuse token ids and targets outside [0, <paramref name="vocabSize"/>) before uploading them.</summary>
    public MicroBatchBuffers(IBackend backend, int vocabSize)
    {
        _backend = backend;
        _vocabSize = vocabSize;
        _packed = new PackedBatchBuffers(backend, vocabSize);
    }

    /// <summary>Tokens the buffers hold now.</summary>
    public int Capacity { get; private set; }

    /// <summary>
    /// Uploads the tokens, positions and targets of <paramref name="range"/> of <paramref name="batch"/> and returns the
    /// micro-batch over views of the buffers (valid until the next <see cref="Load"/>; disposing it frees nothing).
    /// </summary>
    /// <exception cref="ArgumentException">A token id outside the vocabulary (its packed position in the batch and its
    /// value), which is also what a target outside it would be; nothing was uploaded.</exception>
    public MicroBatch Load(ResponseBatch batch, SequenceRange range)
    {
        int n = range.TokenCount;
        var tokens = batch.Tokens.Slice(range.TokenStart, n);
        var hostTargets = batch.Targets.Slice(range.TokenStart, n);
        // The targets are these tokens shifted by one within each sequence (0 at its last position), so this one
        // check covers both index inputs of the model (the embedding's and the log-prob's).
        TokenIds.RequireInVocabulary(tokens, _vocabSize, nameof(batch), "token id", range.TokenStart);
        Reserve(n);
        Span<int> lengths = _hostLengths.AsSpan(0, range.SequenceCount);
        for (int i = 0; i < lengths.Length; i++) lengths[i] = batch.SequenceLength(range.FirstSequence + i);
        var packed = _packed.Load(tokens, lengths);
        var targets = _targets!.SliceRows(0, n);
        _backend.Upload(hostTargets, targets);
        return new MicroBatch(range, packed, targets,
            Float(0, n), Float(1, n), Float(2, n), Float(3, n), Float(4, n), Float(5, n), Float(6, n), Float(7, n));
    }

    private Tensor Float(int index, int n) => _floats[index]!.SliceRows(0, n);

    /// <summary>
    /// Grows the buffers to at least <paramref name="tokens"/> tokens now (a trainer sizes them once for its micro-batch
    /// budget, so later micro-batches allocate nothing). Micro-batches loaded earlier become invalid when this grows.
    /// </summary>
    public void Reserve(int tokens)
    {
        if (tokens <= Capacity) return;
        DisposeTensors();
        int capacity = Math.Max(tokens, Capacity + Capacity / 2);
        _packed.Reserve(capacity);
        // Every sequence has at least one token, so there are never more sequences than tokens.
        _hostLengths = new int[capacity];
        _targets = _backend.Allocate(DType.Int32, new TensorShape(capacity), "micro-batch targets");
        for (int i = 0; i < FloatBufferCount; i++) _floats[i] = _backend.Allocate(DType.Float32, new TensorShape(capacity));
        Capacity = capacity;
    }

    private void DisposeTensors()
    {
        _targets?.Dispose();
        for (int i = 0; i < FloatBufferCount; i++) _floats[i]?.Dispose();
    }

    public void Dispose()
    {
        DisposeTensors();
        _packed.Dispose();
    }
}

/// <summary>One micro-batch on the device: the packed model input and per-token buffers, all views of <see cref="MicroBatchBuffers"/>.</summary>
public sealed class MicroBatch(SequenceRange range, PackedBatch packed, Tensor targets, Tensor weights, Tensor advantages,
    Tensor oldLogProbs, Tensor logProbs, Tensor entropy, Tensor referenceLogProbs, Tensor dLogProbs, Tensor dEntropy) : IDisposable
{
    /// <summary>Which sequences of the batch these are.</summary>
    public SequenceRange Range { get; } = range;

    /// <summary>Tokens, positions and sequence offsets: the model's input.</summary>
    public PackedBatch Packed { get; } = packed;

    /// <summary>Int32 [T]: next-token targets.</summary>
    public Tensor Targets { get; } = targets;

    /// <summary>Float32 [T] buffers the caller fills: per-token loss weights (0 outside the responses), advantages, log-probs.</summary>
    public Tensor Weights { get; } = weights;
    public Tensor Advantages { get; } = advantages;
    public Tensor OldLogProbs { get; } = oldLogProbs;
    public Tensor LogProbs { get; } = logProbs;
    public Tensor Entropy { get; } = entropy;
    public Tensor ReferenceLogProbs { get; } = referenceLogProbs;
    public Tensor DLogProbs { get; } = dLogProbs;
    public Tensor DEntropy { get; } = dEntropy;

    /// <summary>Tokens in the micro-batch.</summary>
    public int TokenCount => Range.TokenCount;

    public void Dispose() => Packed.Dispose();
}

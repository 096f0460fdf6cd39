using OR1.Native;

namespace OR1.Model;

/// <summary>
/// The device buffers of a trainer's micro-batches, allocated once for the largest micro-batch seen and reused by
/// every later one: tokens, positions and next-token targets (filled by <see cref="Load"/> from a
/// <see cref="ResponseBatch"/>), and per-token float buffers for the loss (weights, advantages, old, current and
/// reference log-probs, entropies, and their gradients), which the caller fills. They grow when a longer micro-batch
/// comes (a long sequence goes alone), never shrink.
/// </summary>
public sealed class MicroBatchBuffers : IDisposable
{
    private readonly IBackend _backend;
    private int[] _hostPositions = [];
    private Tensor? _tokens, _positions, _targets;
    private readonly Tensor?[] _floats = new Tensor?[FloatBufferCount];

    private const int FloatBufferCount = 8;

    public MicroBatchBuffers(IBackend backend) => _backend = backend;

    /// <summary>Tokens the buffers hold now.</summary>
    public int Capacity { get; private set; }

    /// <summary>
    /// Uploads the tokens, positions and targets of <paramref name="range"/> of <paramref name="batch"/> and returns the
    /// micro-batch over views of the buffers (valid until the next <see cref="Load"/>; dispose it to free its offsets).
    /// </summary>
    public MicroBatch Load(ResponseBatch batch, SequenceRange range)
    {
        int n = range.TokenCount;
        Reserve(n);
        Span<int> positions = _hostPositions.AsSpan(0, n);
        for (int s = range.FirstSequence, at = 0; s < range.EndSequence; s++)
            for (int p = 0; p < batch.SequenceLength(s); p++, at++) positions[at] = p;
        var tokens = _tokens!.SliceRows(0, n);
        var positionTensor = _positions!.SliceRows(0, n);
        var targets = _targets!.SliceRows(0, n);
        _backend.Upload<int>(batch.Tokens.Slice(range.TokenStart, n), tokens);
        _backend.Upload<int>(positions, positionTensor);
        _backend.Upload<int>(batch.Targets.Slice(range.TokenStart, n), targets);
        var lengths = new int[range.SequenceCount];
        for (int i = 0; i < lengths.Length; i++) lengths[i] = batch.SequenceLength(range.FirstSequence + i);
        var sequences = Segments.FromLengths(_backend, lengths);
        return new MicroBatch(range, PackedBatch.View(tokens, positionTensor, sequences), targets,
            Float(0, n), Float(1, n), Float(2, n), Float(3, n), Float(4, n), Float(5, n), Float(6, n), Float(7, n));
    }

    private Tensor Float(int index, int n) => _floats[index]!.SliceRows(0, n);

    private void Reserve(int tokens)
    {
        if (tokens <= Capacity) return;
        DisposeTensors();
        int capacity = Math.Max(tokens, Capacity + Capacity / 2);
        _hostPositions = new int[capacity];
        _tokens = _backend.Allocate(DType.Int32, new TensorShape(capacity), "micro-batch tokens");
        _positions = _backend.Allocate(DType.Int32, new TensorShape(capacity), "micro-batch positions");
        _targets = _backend.Allocate(DType.Int32, new TensorShape(capacity), "micro-batch targets");
        for (int i = 0; i < FloatBufferCount; i++) _floats[i] = _backend.Allocate(DType.Float32, new TensorShape(capacity));
        Capacity = capacity;
    }

    private void DisposeTensors()
    {
        _tokens?.Dispose();
        _positions?.Dispose();
        _targets?.Dispose();
        for (int i = 0; i < FloatBufferCount; i++) _floats[i]?.Dispose();
    }

    public void Dispose() => DisposeTensors();
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

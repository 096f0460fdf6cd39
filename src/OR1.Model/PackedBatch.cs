using OR1.Native;

namespace OR1.Model;

/// <summary>
/// A micro-batch of token sequences packed end to end (no padding) on the device: token ids, the
/// position of each token within its sequence (RoPE), and the sequence offsets (attention).
/// </summary>
public sealed class PackedBatch : IDisposable
{
    private readonly bool _ownsTensors;

    private PackedBatch(Tensor tokens, Tensor positions, Segments sequences, bool ownsTensors)
    {
        Tokens = tokens;
        Positions = positions;
        Sequences = sequences;
        _ownsTensors = ownsTensors;
    }

    /// <summary>Token ids, Int32 [T].</summary>
    public Tensor Tokens { get; }

    /// <summary>Position of each token within its sequence, Int32 [T].</summary>
    public Tensor Positions { get; }

    /// <summary>Sequence offsets (host and device).</summary>
    public Segments Sequences { get; }

    /// <summary>Total tokens T.</summary>
    public int TokenCount => Sequences.Total;

    /// <summary>Packs <paramref name="sequences"/> and uploads them to <paramref name="backend"/>.</summary>
    public static PackedBatch Create(IBackend backend, IReadOnlyList<IReadOnlyList<int>> sequences)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        if (sequences.Count == 0) throw new ArgumentException("a batch needs at least one sequence", nameof(sequences));
        var lengths = new int[sequences.Count];
        int total = 0;
        for (int s = 0; s < sequences.Count; s++)
        {
            if (sequences[s].Count == 0) throw new ArgumentException($"sequence {s} is empty", nameof(sequences));
            lengths[s] = sequences[s].Count;
            total += lengths[s];
        }
        var tokens = new int[total];
        var positions = new int[total];
        int at = 0;
        for (int s = 0; s < sequences.Count; s++)
        {
            for (int i = 0; i < lengths[s]; i++, at++)
            {
                tokens[at] = sequences[s][i];
                positions[at] = i;
            }
        }
        var tokenTensor = backend.Allocate(DType.Int32, new TensorShape(total), "tokens");
        var positionTensor = backend.Allocate(DType.Int32, new TensorShape(total), "positions");
        backend.Upload<int>(tokens, tokenTensor);
        backend.Upload<int>(positions, positionTensor);
        return new PackedBatch(tokenTensor, positionTensor, Segments.FromLengths(backend, lengths), ownsTensors: true);
    }

    /// <summary>
    /// A batch over tensors someone else owns (views of reused buffers): disposing it disposes only
    /// <paramref name="sequences"/>, which it takes over (a no-op when their offsets live in caller-owned storage,
    /// as <see cref="PackedBatchBuffers"/> arranges).
    /// </summary>
    public static PackedBatch View(Tensor tokens, Tensor positions, Segments sequences)
    {
        if (tokens.ElementCount != sequences.Total || positions.ElementCount != sequences.Total)
            throw new ArgumentException($"tokens ({tokens.ElementCount}) and positions ({positions.ElementCount}) must hold the {sequences.Total} tokens of the sequences");
        return new PackedBatch(tokens, positions, sequences, ownsTensors: false);
    }

    public void Dispose()
    {
        if (_ownsTensors)
        {
            Tokens.Dispose();
            Positions.Dispose();
        }
        Sequences.Dispose();
    }
}

using OR1.Native;

namespace OR1.Model;

/// <summary>
/// A micro-batch of token sequences packed end to end (no padding), uploaded once: token ids, the
/// position of each token within its sequence (RoPE), and the sequence offsets (attention).
/// </summary>
public sealed class PackedBatch : IDisposable
{
    private PackedBatch(Tensor tokens, Tensor positions, Segments sequences, int[] hostTokens)
    {
        Tokens = tokens;
        Positions = positions;
        Sequences = sequences;
        HostTokens = hostTokens;
    }

    /// <summary>Token ids, Int32 [T].</summary>
    public Tensor Tokens { get; }

    /// <summary>Position of each token within its sequence, Int32 [T].</summary>
    public Tensor Positions { get; }

    /// <summary>Sequence offsets (host and device).</summary>
    public Segments Sequences { get; }

    /// <summary>The token ids on the host (for building targets and masks).</summary>
    public IReadOnlyList<int> HostTokens { get; }

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
        return new PackedBatch(tokenTensor, positionTensor, Segments.FromLengths(backend, lengths), tokens);
    }

    public void Dispose()
    {
        Tokens.Dispose();
        Positions.Dispose();
        Sequences.Dispose();
    }
}

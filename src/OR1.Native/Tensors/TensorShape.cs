using System.Runtime.CompilerServices;

namespace OR1.Native;

/// <summary>
/// The dimensions of a row-major tensor, rank 0 to 4, stored inline so that shapes never allocate.
/// </summary>
public readonly struct TensorShape : IEquatable<TensorShape>
{
    /// <summary>The largest rank a tensor may have.</summary>
    public const int MaxRank = 4;

    private readonly Dims _dims;

    /// <summary>Number of dimensions.</summary>
    public int Rank { get; }

    /// <summary>Creates a shape; every dimension must be non-negative.</summary>
    public TensorShape(params ReadOnlySpan<int> dims)
    {
        if (dims.Length > MaxRank)
            throw new ArgumentException($"a tensor has at most {MaxRank} dimensions, got {dims.Length}", nameof(dims));
        for (int i = 0; i < dims.Length; i++)
        {
            if (dims[i] < 0)
                throw new ArgumentException($"dimension {i} is {dims[i]}; dimensions must be non-negative", nameof(dims));
            _dims[i] = dims[i];
        }
        Rank = dims.Length;
    }

    /// <summary>The size of dimension <paramref name="axis"/>; negative axes count from the end.</summary>
    public int this[int axis]
    {
        get
        {
            int a = axis < 0 ? axis + Rank : axis;
            if ((uint)a >= (uint)Rank)
                throw new ArgumentOutOfRangeException(nameof(axis), $"axis {axis} is outside a rank-{Rank} shape {this}");
            return _dims[a];
        }
    }

    /// <summary>Product of the dimensions (1 for a scalar).</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            for (int i = 0; i < Rank; i++) n *= _dims[i];
            return n;
        }
    }

    /// <summary>The dimensions as a new array (for messages and serialisation, not hot paths).</summary>
    public int[] ToArray()
    {
        var result = new int[Rank];
        for (int i = 0; i < Rank; i++) result[i] = _dims[i];
        return result;
    }

    /// <inheritdoc />
    public bool Equals(TensorShape other)
    {
        if (Rank != other.Rank) return false;
        for (int i = 0; i < Rank; i++)
            if (_dims[i] != other._dims[i]) return false;
        return true;
    }

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is TensorShape other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(Rank);
        for (int i = 0; i < Rank; i++) hash.Add(_dims[i]);
        return hash.ToHashCode();
    }

    /// <summary>Shapes are equal when rank and every dimension match.</summary>
    public static bool operator ==(TensorShape left, TensorShape right) => left.Equals(right);

    /// <summary>Shapes differ when rank or any dimension differs.</summary>
    public static bool operator !=(TensorShape left, TensorShape right) => !left.Equals(right);

    /// <summary>Formats as <c>[2, 64]</c>.</summary>
    public override string ToString() => "[" + string.Join(", ", ToArray()) + "]";

    [InlineArray(MaxRank)]
    private struct Dims
    {
        private int _element0;
    }
}

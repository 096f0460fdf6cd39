namespace OR1.Model.Checkpoints;

/// <summary>One tensor listed in a safetensors header, already validated against the file.</summary>
/// <param name="Name">The tensor's name (the header key).</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Dimensions, outermost first; empty for a scalar.</param>
/// <param name="DataBegin">Start of the tensor's bytes, relative to the start of the data section.</param>
/// <param name="DataEnd">End (exclusive) of the tensor's bytes, relative to the start of the data section.</param>
public sealed record TensorEntry(string Name, SafetensorsDType DType, IReadOnlyList<long> Shape, long DataBegin, long DataEnd)
{
    /// <summary>Number of elements: the product of <see cref="Shape"/> (1 for a scalar).</summary>
    public long ElementCount
    {
        get
        {
            long count = 1;
            foreach (long dim in Shape) count *= dim;
            return count;
        }
    }

    /// <summary>Number of bytes: <see cref="DataEnd"/> - <see cref="DataBegin"/>.</summary>
    public long ByteLength => DataEnd - DataBegin;

    /// <summary>Whether the shape equals <paramref name="shape"/> dimension by dimension.</summary>
    public bool HasShape(ReadOnlySpan<int> shape)
    {
        if (shape.Length != Shape.Count) return false;
        for (int i = 0; i < shape.Length; i++)
        {
            if (Shape[i] != shape[i]) return false;
        }
        return true;
    }

    /// <summary>The shape as text, e.g. "[1536, 8960]".</summary>
    public string ShapeText => FormatShape(Shape);

    /// <summary>Formats any shape as "[d0, d1, ...]".</summary>
    public static string FormatShape<T>(IEnumerable<T> shape) => "[" + string.Join(", ", shape) + "]";
}

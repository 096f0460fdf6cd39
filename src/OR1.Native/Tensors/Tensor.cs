using System.Runtime.CompilerServices;

namespace OR1.Native;

/// <summary>
/// A typed, shaped, row-major window onto a <see cref="DeviceBuffer"/>. Views (row slices, reshapes)
/// share the buffer and never copy. A tensor created by <see cref="IBackend.Allocate"/> owns its buffer
/// and frees it on <see cref="Dispose"/>; views never free.
/// </summary>
public sealed class Tensor : IDisposable
{
    private readonly bool _ownsBuffer;

    internal Tensor(DeviceBuffer buffer, long elementOffset, DType dtype, TensorShape shape, bool ownsBuffer, string? name = null)
    {
        long bytes = (elementOffset + shape.ElementCount) * dtype.SizeOf();
        if (elementOffset < 0 || bytes > buffer.SizeInBytes)
            throw new ArgumentException(
                $"a {dtype} tensor of shape {shape} at element offset {elementOffset} needs {bytes} bytes, but its buffer holds {buffer.SizeInBytes}");
        Buffer = buffer;
        ElementOffset = elementOffset;
        DType = dtype;
        Shape = shape;
        Name = name;
        _ownsBuffer = ownsBuffer;
    }

    /// <summary>The memory this tensor reads and writes.</summary>
    public DeviceBuffer Buffer { get; }

    /// <summary>The backend that owns the memory.</summary>
    public IBackend Backend => Buffer.Backend;

    /// <summary>Offset of the first element within <see cref="Buffer"/>, in elements.</summary>
    public long ElementOffset { get; }

    /// <summary>Element type.</summary>
    public DType DType { get; }

    /// <summary>Dimensions.</summary>
    public TensorShape Shape { get; }

    /// <summary>Optional label used in error messages and checkpoints (a parameter name, for example).</summary>
    public string? Name { get; }

    /// <summary>Number of elements.</summary>
    public long ElementCount => Shape.ElementCount;

    /// <summary>Number of dimensions.</summary>
    public int Rank => Shape.Rank;

    /// <summary>Size in bytes of the elements this tensor covers.</summary>
    public long SizeInBytes => ElementCount * DType.SizeOf();

    /// <summary>Size of the first dimension (1 for a scalar).</summary>
    public int Rows => Rank == 0 ? 1 : Shape[0];

    /// <summary>Elements per first-dimension index (the product of the other dimensions).</summary>
    public long RowLength => Rank == 0 ? 1 : ElementCount / Math.Max(1, Shape[0]);

    /// <summary>True when the memory is readable by host code (Cpu and Emu backends).</summary>
    public bool IsHostVisible => Buffer.HostPointer != 0;

    /// <summary>Address of the first element on the device (the host address on host backends).</summary>
    public nint DevicePointer => Buffer.DevicePointer + (nint)(ElementOffset * DType.SizeOf());

    /// <summary>A view of rows [<paramref name="start"/>, start + <paramref name="count"/>) of the first dimension.</summary>
    public Tensor SliceRows(int start, int count)
    {
        if (Rank == 0) throw new InvalidOperationException("a scalar tensor has no rows to slice");
        if (start < 0 || count < 0 || start + count > Shape[0])
            throw new ArgumentOutOfRangeException(nameof(start), $"rows [{start}, {start + count}) are outside a tensor of shape {Shape}");
        Span<int> dims = stackalloc int[Rank];
        for (int i = 0; i < Rank; i++) dims[i] = Shape[i];
        dims[0] = count;
        return new Tensor(Buffer, ElementOffset + start * RowLength, DType, new TensorShape(dims), ownsBuffer: false, Name);
    }

    /// <summary>A view with the same elements and another shape of equal element count.</summary>
    public Tensor Reshape(params ReadOnlySpan<int> dims)
    {
        var shape = new TensorShape(dims);
        if (shape.ElementCount != ElementCount)
            throw new ArgumentException($"cannot reshape {Shape} ({ElementCount} elements) to {shape} ({shape.ElementCount} elements)", nameof(dims));
        return new Tensor(Buffer, ElementOffset, DType, shape, ownsBuffer: false, Name);
    }

    /// <summary>A view of <paramref name="shape"/> starting <paramref name="elementOffset"/> elements into this tensor.</summary>
    public Tensor View(long elementOffset, TensorShape shape)
    {
        if (elementOffset < 0 || elementOffset + shape.ElementCount > ElementCount)
            throw new ArgumentOutOfRangeException(nameof(elementOffset),
                $"a view of shape {shape} at offset {elementOffset} does not fit in a tensor of shape {Shape}");
        return new Tensor(Buffer, ElementOffset + elementOffset, DType, shape, ownsBuffer: false, Name);
    }

    /// <summary>The same memory under another name (for messages); the result is a view.</summary>
    public Tensor WithName(string name) => new(Buffer, ElementOffset, DType, Shape, ownsBuffer: false, name);

    /// <summary>
    /// The elements as a host span. Only host-visible tensors have one: use
    /// <see cref="IBackend.Download{T}"/> for device memory.
    /// </summary>
    public unsafe Span<T> AsSpan<T>() where T : unmanaged
    {
        if (Buffer.IsDisposed) throw new ObjectDisposedException(Describe(), "the tensor's buffer has been disposed");
        if (!IsHostVisible)
            throw new InvalidOperationException($"{Describe()} lives in {Backend.Kind} device memory; copy it with Download instead of reading it as a span");
        if (DTypeInfo.Of<T>() != DType)
            throw new InvalidOperationException($"{Describe()} holds {DType} elements, not {typeof(T).Name}");
        return new Span<T>((byte*)Buffer.HostPointer + ElementOffset * Unsafe.SizeOf<T>(), checked((int)ElementCount));
    }

    /// <summary>A short description for messages: name, dtype, shape and backend.</summary>
    public string Describe() => $"{(Name is null ? "tensor" : $"tensor '{Name}'")} {DType}{Shape} on {Backend.Kind}";

    /// <inheritdoc />
    public override string ToString() => Describe();

    /// <summary>Frees the buffer when this tensor owns it; views do nothing.</summary>
    public void Dispose()
    {
        if (_ownsBuffer) Buffer.Dispose();
    }
}

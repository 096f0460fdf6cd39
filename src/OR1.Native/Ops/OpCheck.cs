using System.Runtime.CompilerServices;

namespace OR1.Native;

/// <summary>
/// Argument checks at the op-contract boundary. Every message starts with the op's name and names the
/// argument, with the expected and the actual value, so a caller never has to debug a kernel.
/// </summary>
internal readonly ref struct OpCheck
{
    private readonly string _op;
    private readonly IBackend _backend;

    public OpCheck(string op, IBackend backend)
    {
        _op = op;
        _backend = backend;
    }

    public ArgumentException Fail(string argument, string problem) => new($"{_op}: argument '{argument}' {problem}.", argument);

    /// <summary>Non-null, alive, owned by this backend, of the given dtype.</summary>
    public Tensor Usable(Tensor? tensor, string argument, DType dtype)
    {
        if (tensor is null) throw new ArgumentNullException(argument, $"{_op}: argument '{argument}' is null.");
        if (tensor.Buffer.IsDisposed) throw Fail(argument, "uses a disposed buffer");
        if (!ReferenceEquals(tensor.Backend, _backend))
            throw Fail(argument, $"is a buffer of the {tensor.Backend.Kind} backend '{tensor.Backend.Description}', but this op runs on {_backend.Kind} '{_backend.Description}'");
        if (tensor.DType != dtype) throw Fail(argument, $"has dtype {tensor.DType}, expected {dtype}");
        return tensor;
    }

    /// <summary>
    /// Usable, in one of the backend's storage dtypes (<see cref="IBackend.StorageTypes"/>); returns that dtype, which the
    /// op's other storage tensors must share.
    /// </summary>
    public DType Storage(Tensor? tensor, string argument)
    {
        if (tensor is null) throw new ArgumentNullException(argument, $"{_op}: argument '{argument}' is null.");
        var storage = _backend.StorageTypes;
        if (tensor.DType is not (DType.Float32 or DType.BFloat16) || !storage.Contains(tensor.DType))
        {
            string supported = string.Join(" or ", storage);
            throw Fail(argument, tensor.DType == DType.BFloat16
                ? $"has dtype BFloat16, but the {_backend.Kind} backend computes and stores in fp32 only (use precision fp32, or a CUDA backend for bf16)"
                : $"has dtype {tensor.DType}, expected a storage dtype of this backend ({supported})");
        }
        return Usable(tensor, argument, tensor.DType).DType;
    }

    /// <summary>Usable and exactly the given shape.</summary>
    public Tensor Shaped(Tensor? tensor, string argument, DType dtype, params ReadOnlySpan<int> dims)
    {
        var t = Usable(tensor, argument, dtype);
        var expected = new TensorShape(dims);
        if (t.Shape != expected) throw Fail(argument, $"has shape {t.Shape}, expected {expected}");
        return t;
    }

    /// <summary>Usable, rank 2; returns its shape.</summary>
    public (int Rows, int Cols) Matrix(Tensor? tensor, string argument, DType dtype = DType.Float32)
    {
        var t = Usable(tensor, argument, dtype);
        if (t.Rank != 2) throw Fail(argument, $"has shape {t.Shape}, expected a matrix [rows, columns]");
        return (t.Shape[0], t.Shape[1]);
    }

    /// <summary>Usable, rank 1; returns its length.</summary>
    public int Vector(Tensor? tensor, string argument, DType dtype = DType.Float32)
    {
        var t = Usable(tensor, argument, dtype);
        if (t.Rank != 1) throw Fail(argument, $"has shape {t.Shape}, expected a vector [n]");
        return t.Shape[0];
    }

    /// <summary>Usable, with the same shape as <paramref name="like"/>.</summary>
    public Tensor SameShape(Tensor? tensor, string argument, Tensor like, string likeArgument, DType dtype = DType.Float32)
    {
        var t = Usable(tensor, argument, dtype);
        if (t.Shape != like.Shape) throw Fail(argument, $"has shape {t.Shape}, expected {like.Shape} (the shape of '{likeArgument}')");
        return t;
    }

    public Segments Segments(Segments? segments, string argument, int expectedTotal, string totalMeaning)
    {
        if (segments is null) throw new ArgumentNullException(argument, $"{_op}: argument '{argument}' is null.");
        if (!ReferenceEquals(segments.DeviceOffsets.Backend, _backend))
            throw Fail(argument, $"was uploaded to the {segments.DeviceOffsets.Backend.Kind} backend, not this {_backend.Kind} backend");
        if (segments.Total != expectedTotal)
            throw Fail(argument, $"offsets add up to {segments.Total}, but {totalMeaning} is {expectedTotal}");
        return segments;
    }

    public void Positive(int value, string argument)
    {
        if (value <= 0) throw Fail(argument, $"is {value}, expected a positive value");
    }

    public void Finite(float value, string argument)
    {
        if (!float.IsFinite(value)) throw Fail(argument, $"is {value}, expected a finite value");
    }

    public void Require(bool condition, string argument, string problem)
    {
        if (!condition) throw Fail(argument, problem);
    }

    /// <summary>As <see cref="Require(bool, string, string)"/>, with an interpolated message that is formatted only when the condition fails.</summary>
    public void Require(bool condition, string argument, [InterpolatedStringHandlerArgument(nameof(condition))] ref ProblemText problem)
    {
        if (!condition) throw Fail(argument, problem.ToStringAndClear());
    }

    public void NoOverlap(Tensor a, string argumentA, Tensor b, string argumentB)
    {
        if (!ReferenceEquals(a.Buffer, b.Buffer)) return;
        long aStart = a.ElementOffset * a.DType.SizeOf(), aEnd = aStart + a.SizeInBytes;
        long bStart = b.ElementOffset * b.DType.SizeOf(), bEnd = bStart + b.SizeInBytes;
        if (aStart < bEnd && bStart < aEnd) throw Fail(argumentB, $"overlaps '{argumentA}' in memory; this op cannot work in place");
    }
}

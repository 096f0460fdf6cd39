namespace OR1.Native;

/// <summary>Element type of a tensor's storage.</summary>
public enum DType
{
    /// <summary>IEEE 754 binary32. The compute type of every backend and the storage type on CPU.</summary>
    Float32,
    /// <summary>bfloat16 (8-bit exponent, 7-bit mantissa): GPU storage type with fp32 accumulation.</summary>
    BFloat16,
    /// <summary>IEEE 754 binary16: accepted when reading checkpoints.</summary>
    Float16,
    /// <summary>Signed 32-bit integer: token ids, positions, offsets, slots.</summary>
    Int32,
}

/// <summary>Facts about <see cref="DType"/> values.</summary>
public static class DTypeInfo
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(this DType dtype) => dtype switch
    {
        DType.Float32 or DType.Int32 => 4,
        DType.BFloat16 or DType.Float16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>The dtype whose elements a host type <typeparamref name="T"/> represents bit for bit.</summary>
    public static DType Of<T>() where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return DType.Float32;
        if (typeof(T) == typeof(int)) return DType.Int32;
        if (typeof(T) == typeof(Half)) return DType.Float16;
        if (typeof(T) == typeof(BFloat16)) return DType.BFloat16;
        throw new NotSupportedException($"no tensor dtype corresponds to host type {typeof(T).Name}");
    }
}

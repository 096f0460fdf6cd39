namespace OR1.Model.Checkpoints;

/// <summary>
/// Element types of the safetensors format, named as they appear in a file's header. The reader
/// accepts all of them in a header; only <see cref="F32"/>, <see cref="BF16"/> and <see cref="F16"/>
/// can be read as floats or written.
/// </summary>
public enum SafetensorsDType
{
    /// <summary>Boolean, one byte.</summary>
    BOOL,
    /// <summary>Unsigned 8-bit integer.</summary>
    U8,
    /// <summary>Signed 8-bit integer.</summary>
    I8,
    /// <summary>8-bit float, 5-bit exponent and 2-bit mantissa.</summary>
    F8_E5M2,
    /// <summary>8-bit float, 4-bit exponent and 3-bit mantissa.</summary>
    F8_E4M3,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>Unsigned 16-bit integer.</summary>
    U16,
    /// <summary>IEEE 754 binary16.</summary>
    F16,
    /// <summary>bfloat16: the upper half of an IEEE binary32.</summary>
    BF16,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Unsigned 32-bit integer.</summary>
    U32,
    /// <summary>IEEE 754 binary32.</summary>
    F32,
    /// <summary>IEEE 754 binary64.</summary>
    F64,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>Unsigned 64-bit integer.</summary>
    U64,
}

/// <summary>Facts about <see cref="SafetensorsDType"/> values.</summary>
public static class SafetensorsDTypeInfo
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.BOOL or SafetensorsDType.U8 or SafetensorsDType.I8
            or SafetensorsDType.F8_E5M2 or SafetensorsDType.F8_E4M3 => 1,
        SafetensorsDType.I16 or SafetensorsDType.U16 or SafetensorsDType.F16 or SafetensorsDType.BF16 => 2,
        SafetensorsDType.I32 or SafetensorsDType.U32 or SafetensorsDType.F32 => 4,
        SafetensorsDType.F64 or SafetensorsDType.I64 or SafetensorsDType.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown safetensors dtype"),
    };

    /// <summary>Whether <see cref="SafetensorsFile.ReadAsFloat32(string, Span{float})"/> and <see cref="SafetensorsWriter"/> handle this dtype.</summary>
    public static bool IsReadableAsFloat(this SafetensorsDType dtype) =>
        dtype is SafetensorsDType.F32 or SafetensorsDType.BF16 or SafetensorsDType.F16;

    /// <summary>The name PyTorch gives this dtype in a config.json's <c>torch_dtype</c> ("float32", "bfloat16", ...).</summary>
    public static string TorchName(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F32 => "float32",
        SafetensorsDType.BF16 => "bfloat16",
        SafetensorsDType.F16 => "float16",
        SafetensorsDType.F64 => "float64",
        SafetensorsDType.BOOL => "bool",
        SafetensorsDType.U8 => "uint8",
        SafetensorsDType.I8 => "int8",
        SafetensorsDType.F8_E5M2 => "float8_e5m2",
        SafetensorsDType.F8_E4M3 => "float8_e4m3fn",
        SafetensorsDType.I16 => "int16",
        SafetensorsDType.U16 => "uint16",
        SafetensorsDType.I32 => "int32",
        SafetensorsDType.U32 => "uint32",
        SafetensorsDType.I64 => "int64",
        SafetensorsDType.U64 => "uint64",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown safetensors dtype"),
    };

    /// <summary>Parses a header dtype string exactly as the format spells it ("F32", "BF16", ...; case-sensitive).</summary>
    /// <returns>False for any other string.</returns>
    public static bool TryParse(string text, out SafetensorsDType dtype)
    {
        SafetensorsDType? parsed = text switch
        {
            "BOOL" => SafetensorsDType.BOOL,
            "U8" => SafetensorsDType.U8,
            "I8" => SafetensorsDType.I8,
            "F8_E5M2" => SafetensorsDType.F8_E5M2,
            "F8_E4M3" => SafetensorsDType.F8_E4M3,
            "I16" => SafetensorsDType.I16,
            "U16" => SafetensorsDType.U16,
            "F16" => SafetensorsDType.F16,
            "BF16" => SafetensorsDType.BF16,
            "I32" => SafetensorsDType.I32,
            "U32" => SafetensorsDType.U32,
            "F32" => SafetensorsDType.F32,
            "F64" => SafetensorsDType.F64,
            "I64" => SafetensorsDType.I64,
            "U64" => SafetensorsDType.U64,
            _ => null,
        };
        dtype = parsed.GetValueOrDefault();
        return parsed.HasValue;
    }
}

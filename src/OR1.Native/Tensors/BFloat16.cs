namespace OR1.Native;

/// <summary>
/// A bfloat16 value: the upper 16 bits of an IEEE binary32. .NET has no public bfloat16 type in the
/// runtime we target, so this is the minimal storage type the tensors and checkpoint code need.
/// Conversion from float rounds to nearest even, as PyTorch and CUDA's __float2bfloat16 do.
/// </summary>
public readonly record struct BFloat16(ushort Bits)
{
    /// <summary>Widens to float exactly.</summary>
    public static explicit operator float(BFloat16 value) => BitConverter.Int32BitsToSingle(value.Bits << 16);

    /// <summary>Rounds a float to the nearest bfloat16 (ties to even); NaN stays NaN.</summary>
    public static explicit operator BFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return new BFloat16((ushort)((bits >> 16) | 0x40));
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return new BFloat16((ushort)((bits + rounding) >> 16));
    }

    /// <inheritdoc />
    public override string ToString() => ((float)this).ToString("R", System.Globalization.CultureInfo.InvariantCulture);
}

using System.Runtime.CompilerServices;

namespace OR1.Native;

/// <summary>
/// The integer rules every backend's sampler follows (kernels/sampling.cu states them in full): a token's weight is
/// its probability relative to the most likely token, e = exp(z - max z) in fp32, as a fixed-point integer
/// trunc(e * 2^F); kept, nucleus and drawn weights are exact integer sums, so the draw does not depend on summation
/// order, thread count or backend. F = min(3 (32 - n) - 1, 62 - n) with n = ceil(log2 V): a GPU sums weights in
/// three 32-bit counters of at most 32 - n bits (exact for V tokens), and the total stays below 2^62. Qwen2's
/// 151,936 tokens give F = 41, so a token below 2^-41 of the most likely one weighs nothing.
/// </summary>
internal static class SamplingRules
{
    /// <summary>Fraction bits F of the weights for a vocabulary of <paramref name="vocab"/> tokens.</summary>
    public static int FractionBits(int vocab)
    {
        int n = vocab <= 1 ? 0 : 32 - System.Numerics.BitOperations.LeadingZeroCount((uint)(vocab - 1));
        return Math.Min(3 * (32 - n) - 1, 62 - n);
    }

    /// <summary>2^F as a float (exact: a power of two).</summary>
    public static float Scale(int fractionBits) => BitConverter.Int32BitsToSingle((127 + fractionBits) << 23);

    /// <summary>The weight of a token whose relative probability is <paramref name="e"/>, in [0, 1].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Weight(float e, float scale) => (ulong)(e * scale);

    /// <summary>32 bits whose ascending order is the descending order of z; ties between equal z go to the lower id.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint ValueKey(float z)
    {
        uint bits = BitConverter.SingleToUInt32Bits(z);
        uint ordered = (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
        return ~ordered;
    }

    /// <summary>The z of a <see cref="ValueKey"/>.</summary>
    public static float KeyValue(uint key)
    {
        uint ordered = ~key;
        return BitConverter.UInt32BitsToSingle((ordered & 0x80000000u) != 0 ? ordered & 0x7fffffffu : ~ordered);
    }

    /// <summary>ceil(p * k) exactly for 0 &lt; p &lt; 1: the top-p goal in weight.</summary>
    public static ulong CeilMulFraction(float p, ulong k)
    {
        uint bits = BitConverter.SingleToUInt32Bits(p);
        int exponent = (int)((bits >> 23) & 0xff);
        ulong mantissa = bits & 0x7fffffu;
        if (exponent != 0) mantissa |= 0x800000u;
        else exponent = 1;
        int shift = 150 - exponent; // p = mantissa / 2^shift
        UInt128 product = (UInt128)mantissa * k;
        if (shift >= 128) return product == 0 ? 0UL : 1UL;
        UInt128 quotient = product >> shift;
        bool rest = (product & ((UInt128.One << shift) - 1)) != 0;
        return (ulong)quotient + (rest ? 1UL : 0UL);
    }

    /// <summary>floor(n * bits53 / 2^53): the draw's target in [0, n) for <see cref="CounterRng"/>'s 53 random bits.</summary>
    public static ulong ScaleUniform(ulong n, ulong bits53)
    {
        ulong high = Math.BigMul(n, bits53, out ulong low);
        return (low >> 53) | (high << 11);
    }

    /// <summary>The 53 random bits of row <paramref name="row"/> (the numerator of <see cref="CounterRng.Uniform"/>).</summary>
    public static ulong UniformBits(ulong seed, ulong counter, ulong row) => CounterRng.Hash(seed, counter, row) >> 11;
}

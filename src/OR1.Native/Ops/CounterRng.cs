namespace OR1.Native;

/// <summary>
/// The counter-based random numbers every backend's sampler uses: the uniform for row b of a sampling
/// call is a pure function of (seed, counter, b), so a batch samples identically on any backend and
/// thread count, and a resumed run continues the same stream from a saved counter. SplitMix64's
/// finaliser is the mixer (a bijection with full avalanche); CUDA kernels compute the same integers.
/// </summary>
public static class CounterRng
{
    /// <summary>A 64-bit hash of (seed, counter, row).</summary>
    public static ulong Hash(ulong seed, ulong counter, ulong row)
    {
        ulong z = Mix(seed + 0x9E3779B97F4A7C15UL);
        z = Mix(z ^ (counter * 0xD1B54A32D192ED03UL));
        return Mix(z ^ (row * 0x8CB92BA72F3D8DD7UL + 0x632BE59BD9B4E019UL));
    }

    /// <summary>A uniform double in [0, 1) with 53 random bits.</summary>
    public static double Uniform(ulong seed, ulong counter, ulong row) => (Hash(seed, counter, row) >> 11) * (1.0 / (1UL << 53));

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

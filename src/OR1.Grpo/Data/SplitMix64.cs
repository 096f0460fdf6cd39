namespace OR1.Grpo.Data;

/// <summary>
/// SplitMix64 (Steele, Lea and Flood; the seeding generator of xoshiro): a tiny 64-bit generator whose
/// output is fixed by its definition, so a seeded shuffle gives the same order on every machine and
/// every .NET version (System.Random makes no such promise). Not thread-safe.
/// </summary>
public sealed class SplitMix64
{
    private const ulong Gamma = 0x9E3779B97F4A7C15UL;
    private ulong _state;

    /// <summary>A generator whose first output is <c>Mix(seed + 0x9E3779B97F4A7C15)</c>.</summary>
    public SplitMix64(ulong seed) => _state = seed;

    /// <summary>The next 64 uniformly distributed bits.</summary>
    public ulong Next()
    {
        _state = unchecked(_state + Gamma);
        return Mix(_state);
    }

    /// <summary>A uniform integer in [0, bound) without modulo bias (rejection of the short last range).</summary>
    public ulong NextBelow(ulong bound)
    {
        if (bound == 0) throw new ArgumentOutOfRangeException(nameof(bound), "bound must be positive");
        // Values below `threshold` would make the low residues more likely; 2^64 mod bound of them are rejected.
        ulong threshold = unchecked(0UL - bound) % bound;
        while (true)
        {
            ulong r = Next();
            if (r >= threshold) return r % bound;
        }
    }

    /// <summary>
    /// Shuffles in place with Fisher-Yates from the last element down (element i swaps with a uniform j in [0, i]).
    /// </summary>
    public void Shuffle<T>(IList<T> items)
    {
        ArgumentNullException.ThrowIfNull(items);
        for (int i = items.Count - 1; i > 0; i--)
        {
            int j = (int)NextBelow((ulong)i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary>The SplitMix64 finaliser: a bijection on 64-bit values that spreads every input bit.</summary>
    public static ulong Mix(ulong z)
    {
        unchecked
        {
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }
}

namespace OR1.Model.Generation;

/// <summary>How many pages the rollout engine's KV cache gets when the caller names no budget.</summary>
public static class KvCacheSizing
{
    /// <summary>The share of the free memory a default cache may take (the rest is the trainer's and the activations').</summary>
    public const double DefaultFraction = 0.5;

    /// <summary>
    /// Pages for a cache that serves <paramref name="wantedPages"/> (every slot at full length) when memory allows, and
    /// otherwise <see cref="DefaultFraction"/> of <paramref name="freeBytes"/> (null: unknown, take what is wanted), but
    /// never fewer than one request's <paramref name="requestPages"/>: a smaller cache could not finish a long request
    /// (the engine pre-empts the rest and recomputes them).
    /// </summary>
    public static long DefaultPages(long wantedPages, long requestPages, long pageBytes, long? freeBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pageBytes, 1);
        if (freeBytes is not { } free) return wantedPages;
        long affordable = (long)(free * DefaultFraction) / pageBytes;
        return Math.Max(Math.Min(wantedPages, affordable), Math.Min(wantedPages, requestPages));
    }
}

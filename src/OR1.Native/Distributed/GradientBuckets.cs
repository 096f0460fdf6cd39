namespace OR1.Native.Distributed;

/// <summary>
/// One piece of a flat gradient buffer that one collective sums over the ranks: elements [Start, Start + Length),
/// all-reduced on every rank (<see cref="Owner"/> -1), or reduced to rank <see cref="Owner"/> alone (the sharded
/// optimizer, whose rank r keeps slice r of the flat layout: every bucket lies within one slice).
/// </summary>
public readonly record struct GradientBucket(long Start, int Length, int Owner)
{
    /// <summary>One past the bucket's last element.</summary>
    public long End => Start + Length;
}

/// <summary>How a flat gradient buffer is cut into the buckets its reduction sums one collective at a time.</summary>
public static class GradientBuckets
{
    /// <summary>
    /// The buckets of a flat gradient of <paramref name="flatLength"/> elements, in the order a backward finishes them:
    /// from the end of the layout (the LM head and the last layer, whose gradients come first) to its start (the
    /// embedding, last), each at most <paramref name="bucketElements"/> long. Sharded, each rank's slice (flatLength /
    /// worldSize elements) is cut on its own, so that a bucket has one owner; unsharded, the buffer is one piece. Every
    /// rank derives the same plan, so the ranks issue the same collectives in the same order, and a run with the
    /// reduction overlapped sums exactly the buckets of a run without.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative length, a world below one or a bucket below one element.</exception>
    /// <exception cref="ArgumentException">Sharded over a world that does not divide the length into equal slices.</exception>
    public static GradientBucket[] Plan(long flatLength, int worldSize, bool sharded, int bucketElements)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(flatLength);
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(bucketElements, 1);
        if (sharded && flatLength % worldSize != 0)
            throw new ArgumentException($"a flat gradient of {flatLength:N0} elements cannot be cut into {worldSize} equal slices", nameof(worldSize));
        int pieces = sharded ? worldSize : 1;
        long slice = flatLength / pieces;
        var buckets = new List<GradientBucket>();
        for (int piece = pieces - 1; piece >= 0; piece--)
        {
            long start = slice * piece;
            for (long end = start + slice; end > start; end -= bucketElements)
            {
                long from = Math.Max(start, end - bucketElements);
                buckets.Add(new GradientBucket(from, (int)(end - from), sharded ? piece : -1));
            }
        }
        return buckets.ToArray();
    }
}

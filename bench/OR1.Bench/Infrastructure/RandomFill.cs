using OR1.Native;

namespace OR1.Bench;

/// <summary>
/// Fast, reproducible uniform fill for benchmark inputs. System.Random is sequential, which is tens of
/// seconds for the 545 M floats of a 7B LM head; <see cref="CounterRng"/> is a pure function of the
/// index, so blocks fill in parallel and the values do not depend on the thread count.
/// </summary>
public static class RandomFill
{
    private const int Block = 1 << 16;

    /// <summary>Fills <paramref name="data"/> with values in [-scale, scale) determined by <paramref name="seed"/>.</summary>
    public static void Uniform(float[] data, int seed, float scale)
    {
        int blocks = (data.Length + Block - 1) / Block;
        Parallel.For(0, blocks, b =>
        {
            int end = Math.Min(data.Length, (b + 1) * Block);
            for (int i = b * Block; i < end; i++)
                data[i] = (float)(CounterRng.Uniform((ulong)seed, 0, (ulong)i) * 2 - 1) * scale;
        });
    }
}

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

    /// <summary>
    /// Rows of logits shaped like a language model's next-token row: the bulk normal with standard deviation 2, and in
    /// each row <paramref name="head"/> tokens at random ids raised by 10, 11, ... so they hold most of the probability
    /// (about 95 % together at Qwen2's vocabulary), as the few plausible continuations of a real row do. Uniform logits
    /// are the sampler's worst case (a nucleus of a fifth of the vocabulary); these are its usual one.
    /// </summary>
    public static void ModelLike(float[] data, int columns, int seed, int head = 8)
    {
        int rows = data.Length / columns;
        Parallel.For(0, rows, r =>
        {
            for (int j = 0; j < columns; j++)
            {
                ulong i = (ulong)r * (ulong)columns + (ulong)j;
                // Box-Muller on two counter-based uniforms: the same data for every run and thread count.
                double u1 = 1 - CounterRng.Uniform((ulong)seed, 1, i), u2 = CounterRng.Uniform((ulong)seed, 2, i);
                data[i] = (float)(2 * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
            }
            for (int h = 0; h < head; h++)
            {
                int id = (int)(CounterRng.Uniform((ulong)seed, 3, (ulong)(r * head + h)) * columns);
                data[(long)r * columns + id] += 10f + h;
            }
        });
    }
}

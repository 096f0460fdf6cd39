using System.Numerics.Tensors;

namespace OR1.Native.Cpu;

/// <summary>
/// Sum of squares for the global gradient norm. Vectorised fp32 sums over 16K-element blocks (short
/// enough that fp32 loses nothing that matters), blocks added in double, parts added in part order.
/// </summary>
internal static unsafe class CpuReduce
{
    private const int Block = 1 << 14;

    public static double SumOfSquares(float* x, long count)
    {
        if (count == 0) return 0;
        long blocks = (count + Block - 1) / Block;
        int parts = CpuParallel.PartCount((int)Math.Min(blocks, int.MaxValue), 2);
        var partials = new double[Math.Max(1, parts)];
        CpuParallel.ForParts((int)blocks, parts, (part, b0, b1) =>
        {
            double sum = 0;
            for (long b = b0; b < b1; b++)
            {
                long start = b * Block;
                int length = (int)Math.Min(Block, count - start);
                sum += TensorPrimitives.SumOfSquares(new ReadOnlySpan<float>(x + start, length));
            }
            partials[part] = sum;
        });
        double total = 0;
        foreach (double p in partials) total += p;
        return total;
    }
}

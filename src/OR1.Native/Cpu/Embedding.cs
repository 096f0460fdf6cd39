using System.Numerics.Tensors;

namespace OR1.Native.Cpu;

/// <summary>Token embedding lookup and its gradient.</summary>
internal static unsafe class CpuEmbedding
{
    public static void Forward(int* tokenIds, float* table, float* output, int count, int vocab, int width)
    {
        CheckIds("EmbeddingForward", tokenIds, count, vocab);
        CpuParallel.For(count, CpuElementwise.RowGrain(width), (start, end) =>
        {
            for (int n = start; n < end; n++)
                new ReadOnlySpan<float>(table + (long)tokenIds[n] * width, width).CopyTo(new Span<float>(output + (long)n * width, width));
        });
    }

    /// <summary>
    /// Scatter-add with a deterministic order: threads own disjoint column ranges and each walks the
    /// tokens in order, so repeated ids are summed in token order and no two threads touch one element.
    /// </summary>
    public static void Backward(int* tokenIds, float* dOutput, float* dTable, int count, int vocab, int width)
    {
        CheckIds("EmbeddingBackward", tokenIds, count, vocab);
        int columnsPerPart = Math.Max(16, (width + CpuParallel.ThreadCount - 1) / CpuParallel.ThreadCount);
        int parts = (width + columnsPerPart - 1) / columnsPerPart;
        if ((long)count * width < CpuElementwise.Grain) parts = 1;
        CpuParallel.ForParts(width, parts, (_, c0, c1) =>
        {
            int columns = c1 - c0;
            for (int n = 0; n < count; n++)
            {
                var target = new Span<float>(dTable + (long)tokenIds[n] * width + c0, columns);
                TensorPrimitives.Add(target, new ReadOnlySpan<float>(dOutput + (long)n * width + c0, columns), target);
            }
        });
    }

    private static void CheckIds(string op, int* tokenIds, int count, int vocab)
    {
        for (int n = 0; n < count; n++)
        {
            if ((uint)tokenIds[n] >= (uint)vocab)
                throw new ArgumentException($"{op}: argument 'tokenIds' has id {tokenIds[n]} at position {n}, outside the table's vocabulary [0, {vocab})", "tokenIds");
        }
    }
}

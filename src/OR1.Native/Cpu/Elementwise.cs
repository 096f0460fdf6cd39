using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace OR1.Native.Cpu;

/// <summary>
/// Elementwise and row-movement kernels. They are memory-bound, so they go through TensorPrimitives
/// (already vectorised with tails handled) in ranges large enough that a thread streams whole pages.
/// </summary>
internal static unsafe class CpuElementwise
{
    /// <summary>Below this many elements a second thread costs more than it saves.</summary>
    public const int Grain = 1 << 15;

    public static void Fill(float* x, long count, float value) =>
        ForRanges(count, (start, length) => new Span<float>(x + start, length).Fill(value));

    public static void Copy(byte* source, byte* destination, long bytes) =>
        ForRanges(bytes, (start, length) => new ReadOnlySpan<byte>(source + start, length).CopyTo(new Span<byte>(destination + start, length)));

    public static void Add(float* a, float* b, float* output, long count) =>
        ForRanges(count, (start, length) => TensorPrimitives.Add(
            new ReadOnlySpan<float>(a + start, length), new ReadOnlySpan<float>(b + start, length), new Span<float>(output + start, length)));

    public static void Scale(float* x, long count, float factor) =>
        ForRanges(count, (start, length) =>
        {
            var span = new Span<float>(x + start, length);
            TensorPrimitives.Multiply(span, factor, span);
        });

    /// <summary>
    /// x[n, :] += bias, a plain loop per row: the rows are short (the key and value biases of a decode step are 64 wide), so
    /// a TensorPrimitives call per row cost more in its checks than in the additions.
    /// </summary>
    public static void AddBias(float* x, float* bias, int rows, int width)
    {
        CpuParallel.For(rows, RowGrain(width), (start, end) =>
        {
            for (int n = start; n < end; n++)
            {
                float* row = x + (long)n * width;
                int i = 0;
                if (Vector256.IsHardwareAccelerated)
                    for (; i <= width - 8; i += 8) (Vector256.Load(row + i) + Vector256.Load(bias + i)).Store(row + i);
                for (; i < width; i++) row[i] += bias[i];
            }
        });
    }

    /// <summary>
    /// Column sums over rows, added to dBias. Threads sum disjoint row ranges into private partials that
    /// are then added in part order, which keeps the result deterministic for a fixed thread count.
    /// </summary>
    public static void BiasBackward(float* dOutput, float* dBias, int rows, int width)
    {
        int parts = CpuParallel.PartCount(rows, RowGrain(width));
        using var partials = new ScratchFloats(Math.Max(1, parts) * width);
        float* partial = partials.Pointer;
        new Span<float>(partial, parts * width).Clear();
        CpuParallel.ForParts(rows, parts, (part, start, end) =>
        {
            var sum = new Span<float>(partial + (long)part * width, width);
            for (int n = start; n < end; n++)
                TensorPrimitives.Add(sum, new ReadOnlySpan<float>(dOutput + (long)n * width, width), sum);
        });
        var target = new Span<float>(dBias, width);
        for (int p = 0; p < parts; p++)
            TensorPrimitives.Add(target, new ReadOnlySpan<float>(partial + (long)p * width, width), target);
    }

    public static void GatherRows(byte* source, int sourceRows, int* rowIndices, byte* destination, int count, int rowBytes, string op)
    {
        CheckIndices(rowIndices, count, sourceRows, op, "rowIndices");
        CpuParallel.For(count, Math.Max(1, Grain * 4 / Math.Max(1, rowBytes)), (start, end) =>
        {
            for (int i = start; i < end; i++)
                new ReadOnlySpan<byte>(source + (long)rowIndices[i] * rowBytes, rowBytes)
                    .CopyTo(new Span<byte>(destination + (long)i * rowBytes, rowBytes));
        });
    }

    public static void ScatterRows(byte* source, int* rowIndices, int count, byte* destination, int destinationRows, int rowBytes, string op)
    {
        CheckIndices(rowIndices, count, destinationRows, op, "rowIndices");
        CpuParallel.For(count, Math.Max(1, Grain * 4 / Math.Max(1, rowBytes)), (start, end) =>
        {
            for (int i = start; i < end; i++)
                new ReadOnlySpan<byte>(source + (long)i * rowBytes, rowBytes)
                    .CopyTo(new Span<byte>(destination + (long)rowIndices[i] * rowBytes, rowBytes));
        });
    }

    /// <summary>Every index in [0, rows), else an ArgumentException naming the op, the argument, the entry and the range.</summary>
    public static void CheckIndices(int* indices, int count, int rows, string op, string argument)
    {
        for (int i = 0; i < count; i++)
        {
            if ((uint)indices[i] >= (uint)rows)
                throw new ArgumentException($"{op}: argument '{argument}' has {indices[i]} at position {i}, outside [0, {rows})", argument);
        }
    }

    /// <summary>Rows per work range so that a range covers about <see cref="Grain"/> elements.</summary>
    public static int RowGrain(int width) => Math.Max(1, Grain / Math.Max(1, width));

    /// <summary>Splits [0, count) into ranges of at least <see cref="Grain"/> elements, run in parallel.</summary>
    public static void ForRanges(long count, Action<long, int> body)
    {
        // Spans are int-indexed, so very large tensors are first cut into blocks of at most 2^30 elements.
        const long block = 1L << 30;
        for (long blockStart = 0; blockStart < count; blockStart += block)
        {
            int length = (int)Math.Min(block, count - blockStart);
            long offset = blockStart;
            CpuParallel.For(length, Grain, (start, end) => body(offset + start, end - start));
        }
    }
}

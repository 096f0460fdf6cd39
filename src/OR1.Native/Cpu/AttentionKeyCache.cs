namespace OR1.Native.Cpu;

internal static unsafe partial class CpuAttention
{
    /// <summary>
    /// Writes keys [count, width] to the cache rows cacheRows[i] = page * pageSize + position of keyCache [pages, pageSize,
    /// width] in the <see cref="KeyCacheLayout.PageTransposed"/> layout <see cref="Decode"/> reads: element c of a
    /// position goes to row c of its page's transpose. A position touches one line per element instead of width / 16
    /// lines, but it is written once and read at every later step, which then needs no transposition.
    /// </summary>
    public static void WriteKeys(float* keys, int* cacheRows, int count, float* keyCache, int pages, int pageSize, int width, string op)
    {
        CpuElementwise.CheckIndices(cacheRows, count, checked(pages * pageSize), op, "cacheRows");
        CpuParallel.For(count, Math.Max(1, 2048 / Math.Max(1, width)), (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                int row = cacheRows[i];
                float* source = keys + (long)i * width;
                float* column = keyCache + (long)(row / pageSize) * pageSize * width + row % pageSize;
                for (int c = 0; c < width; c++) column[(long)c * pageSize] = source[c];
            }
        });
    }
}

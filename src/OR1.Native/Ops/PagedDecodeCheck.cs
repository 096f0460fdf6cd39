namespace OR1.Native;

/// <summary>
/// The host-side check of <see cref="IBackend.AttentionDecode"/>'s index values, for the backends that hold them on the
/// host (Cpu) or read them back to check (ILGPU): each length in [1, pages per row x page size], then the table entries
/// that length reads in [0, pages). The kernel backends make the same checks on the device (kernels/attention_decode.cu).
/// </summary>
internal static class PagedDecodeCheck
{
    /// <summary>Throws the op's <see cref="ArgumentException"/> for the first bad length or page; returns the total positions.</summary>
    public static long Validate(ReadOnlySpan<int> lengths, ReadOnlySpan<int> pageTable, int batch, int pagesPerRow, int pageSize, int pages)
    {
        long positions = 0, capacity = (long)pagesPerRow * pageSize;
        for (int b = 0; b < batch; b++)
        {
            if (lengths[b] < 1 || lengths[b] > capacity)
                throw new ArgumentException($"AttentionDecode: lengths[{b}] = {lengths[b]} is outside [1, {capacity}] (pages per row {pagesPerRow} x page size {pageSize})", nameof(lengths));
            for (int i = 0, used = (lengths[b] + pageSize - 1) / pageSize; i < used; i++)
            {
                int page = pageTable[b * pagesPerRow + i];
                if ((uint)page >= (uint)pages)
                    throw new ArgumentException(pagesPerRow == 1
                        ? $"AttentionDecode: pageTable[{b}] = {page} is outside [0, {pages})"
                        : $"AttentionDecode: pageTable[{b}, {i}] = {page} is outside [0, {pages}), the cache's pages", nameof(pageTable));
            }
            positions += lengths[b];
        }
        return positions;
    }
}

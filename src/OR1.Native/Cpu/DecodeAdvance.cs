namespace OR1.Native.Cpu;

/// <summary>
/// The decode loop's stop rules and input advance (<see cref="IBackend.AdvanceDecode"/>), row by row: the plain reference
/// that kernels/sampling_stop.cu and Ilgpu/DecodeAdvance.cs follow. A row's remaining count is its state: &gt; 0 running
/// (tokens it may still sample), 0 stopped at its length limit, -1 stopped at a stop token.
/// </summary>
internal static class CpuDecodeAdvance
{
    /// <summary>Where a running row's next position has no page: (row, position), or (-1, 0) when every row has one.</summary>
    public static (int Row, int Position) FindMissingPage(ReadOnlySpan<int> sampled, ReadOnlySpan<int> stopTokens, ReadOnlySpan<int> remaining,
        ReadOnlySpan<int> positions, ReadOnlySpan<int> pageTable, int tableWidth, int pageSize)
    {
        for (int row = 0; row < sampled.Length; row++)
        {
            int left = remaining[row];
            if (left <= 0 || stopTokens.Contains(sampled[row]) || left == 1) continue; // stopped before or now: no next position
            int position = positions[row] + 1;
            if (NextPage(pageTable.Slice(row * tableWidth, tableWidth), position, pageSize) < 0) return (row, position);
        }
        return (-1, 0);
    }

    /// <summary>The page holding <paramref name="position"/> in a row of the page table, or -1 when the row holds none there.</summary>
    public static int NextPage(ReadOnlySpan<int> tableRow, int position, int pageSize)
    {
        int slot = position / pageSize;
        return slot < tableRow.Length ? Math.Max(tableRow[slot], -1) : -1;
    }

    /// <summary>The message of a running row whose next position has no page (every backend's, wherever it is found).</summary>
    public static string MissingPageMessage(int row, int position, int tableWidth) =>
        $"AdvanceDecode: row {row} goes on to position {position}, but its 'next.PageTable' row ({tableWidth} slots) holds no page for it; " +
        "give a running row its next page before the step";

    /// <summary>Advances every row (the op's contract; the caller has checked the shapes and, with <paramref name="advanceInputs"/>, the pages).</summary>
    public static void Advance(ReadOnlySpan<int> sampled, ReadOnlySpan<int> stopTokens, Span<int> remaining, Span<int> emitted,
        Span<int> tokens, Span<int> positions, Span<int> lengths, Span<int> streams, Span<int> cacheRows, ReadOnlySpan<int> pageTable,
        int tableWidth, int pageSize, int sinkRow, bool advanceInputs)
    {
        for (int row = 0; row < sampled.Length; row++)
        {
            int left = remaining[row];
            if (left <= 0)
            {
                emitted[row] = -1;
                if (advanceInputs) cacheRows[row] = sinkRow;
                continue;
            }
            int token = sampled[row];
            emitted[row] = token;
            left = stopTokens.Contains(token) ? -1 : left - 1;
            remaining[row] = left;
            if (!advanceInputs) continue;
            if (left <= 0)
            {
                cacheRows[row] = sinkRow;
                continue;
            }
            int position = positions[row] + 1;
            int page = NextPage(pageTable.Slice(row * tableWidth, tableWidth), position, pageSize);
            tokens[row] = token;
            positions[row] = position;
            lengths[row] = position + 1;
            streams[2 * row + 1]++;
            cacheRows[row] = page * pageSize + position % pageSize;
        }
    }
}

using ILGPU;
using ILGPU.Runtime;

namespace OR1.Native.Ilgpu;

/// <summary>
/// The decode loop's stop rules and input advance (<see cref="IBackend.AdvanceDecode"/>): one thread per row, the rules of
/// Cpu/DecodeAdvance.cs and kernels/sampling_stop.cu. The rows' next pages are checked on the host before the launch
/// (the backend's index checks), so the kernel assumes them.
/// </summary>
internal static class IlgpuDecodeAdvance
{
    /// <summary>One call's scalars.</summary>
    public struct AdvanceArgs
    {
        public int Rows, StopCount, TableWidth, PageSize, SinkRow;
        /// <summary>1: running rows get the next step's inputs; 0: only the stop rules run (the input views are stand-ins).</summary>
        public int Advance;
    }

    [IlgpuKernel]
    public static void AdvanceKernel(ArrayView<int> sampled, ArrayView<int> stopTokens, ArrayView<int> remaining, ArrayView<int> emitted,
        ArrayView<int> tokens, ArrayView<int> positions, ArrayView<int> lengths, ArrayView<int> streams, ArrayView<int> cacheRows,
        ArrayView<int> table, AdvanceArgs a)
    {
        // A grid-stride loop: the profile's grids may hold fewer threads than rows.
        for (int row = Grid.GlobalIndex.X; row < a.Rows; row += Grid.DimX * Group.DimX) AdvanceRow(row, sampled, stopTokens, remaining, emitted,
            tokens, positions, lengths, streams, cacheRows, table, a);
    }

    private static void AdvanceRow(int row, ArrayView<int> sampled, ArrayView<int> stopTokens, ArrayView<int> remaining, ArrayView<int> emitted,
        ArrayView<int> tokens, ArrayView<int> positions, ArrayView<int> lengths, ArrayView<int> streams, ArrayView<int> cacheRows,
        ArrayView<int> table, AdvanceArgs a)
    {
        int left = remaining[row];
        if (left <= 0)
        {
            emitted[row] = -1;
            if (a.Advance != 0) cacheRows[row] = a.SinkRow;
            return;
        }
        int token = sampled[row];
        emitted[row] = token;
        bool stop = false;
        for (int s = 0; s < a.StopCount; s++) stop |= stopTokens[s] == token;
        left = stop ? -1 : left - 1;
        remaining[row] = left;
        if (a.Advance == 0) return;
        if (left <= 0)
        {
            cacheRows[row] = a.SinkRow;
            return;
        }
        int position = positions[row] + 1;
        int page = table[(long)row * a.TableWidth + position / a.PageSize];
        tokens[row] = token;
        positions[row] = position;
        lengths[row] = position + 1;
        streams[2 * row + 1] += 1;
        cacheRows[row] = page * a.PageSize + position % a.PageSize;
    }

    public static void Advance(IlgpuDevice device, ArrayView<int> sampled, ArrayView<int> stopTokens, ArrayView<int> remaining, ArrayView<int> emitted,
        ArrayView<int> tokens, ArrayView<int> positions, ArrayView<int> lengths, ArrayView<int> streams, ArrayView<int> cacheRows, ArrayView<int> table,
        AdvanceArgs args)
    {
        var p = device.Profile;
        device.Load<ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<int>,
            ArrayView<int>, ArrayView<int>, AdvanceArgs>(AdvanceKernel)(new KernelConfig(p.Groups(args.Rows, p.BlockThreads), p.BlockThreads),
            sampled, stopTokens, remaining, emitted, tokens, positions, lengths, streams, cacheRows, table, args);
    }
}

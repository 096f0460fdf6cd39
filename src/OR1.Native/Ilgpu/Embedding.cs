using ILGPU;
using ILGPU.Runtime;

namespace OR1.Native.Ilgpu;

/// <summary>
/// Token embedding lookup and its deterministic gradient. The backward is PyTorch's deterministic
/// embedding backward: sort (id, position) keys, then let one group own each run of equal ids and add
/// that run's gradient rows in position order, so repeated ids are summed in token order (the Cpu
/// backend's order, bit for bit) and no two groups write the same row: no atomics.
/// The sort is a bitonic network over 64-bit keys ((id &lt;&lt; 32) | position, padded with ulong.MaxValue to a
/// power of two): every compare-exchange stage is one grid-stride launch.
/// </summary>
internal static class IlgpuEmbedding
{
    private static long Stride => (long)Grid.DimX * Group.DimX;

    [IlgpuKernel]
    public static void ForwardKernel(ArrayView<int> tokenIds, ArrayView<float> table, ArrayView<float> output, int width)
    {
        for (long e = Grid.GlobalIndex.X; e < output.Length; e += Stride)
        {
            long n = e / width, c = e - n * width;
            output[e] = table[(long)tokenIds[n] * width + c];
        }
    }

    [IlgpuKernel]
    public static void MakeKeysKernel(ArrayView<int> tokenIds, ArrayView<ulong> keys, int count)
    {
        for (long i = Grid.GlobalIndex.X; i < keys.Length; i += Stride)
            keys[i] = i < count ? ((ulong)(uint)tokenIds[i] << 32) | (ulong)i : ulong.MaxValue;
    }

    /// <summary>One stage (block size <paramref name="k"/>, distance <paramref name="j"/>) of the bitonic sort, ascending.</summary>
    [IlgpuKernel]
    public static void BitonicStageKernel(ArrayView<ulong> keys, int k, int j)
    {
        long half = keys.Length / 2;
        for (long t = Grid.GlobalIndex.X; t < half; t += Stride)
        {
            // The t-th pair: i has bit j clear, partner l = i | j.
            long i = ((t / j) * 2 * j) + (t % j);
            long l = i + j;
            bool ascending = (i & k) == 0;
            ulong a = keys[i], b = keys[l];
            if ((a > b) == ascending)
            {
                keys[i] = b;
                keys[l] = a;
            }
        }
    }

    /// <summary>Runs of equal ids in the sorted keys: the group at a run's first position adds the run into dTable.</summary>
    [IlgpuKernel]
    public static void AccumulateRunsKernel(ArrayView<ulong> keys, ArrayView<float> dOutput, ArrayView<float> dTable, int count, int width)
    {
        for (int i = Grid.IdxX; i < count; i += Grid.DimX)
        {
            uint id = (uint)(keys[i] >> 32);
            bool head = i == 0 || (uint)(keys[i - 1] >> 32) != id;
            if (!head) continue;
            long target = (long)id * width;
            for (int c = Group.IdxX; c < width; c += Group.DimX)
            {
                float sum = dTable[target + c];
                for (int r = i; r < count; r++)
                {
                    ulong key = keys[r];
                    if ((uint)(key >> 32) != id) break;
                    sum += dOutput[(long)(uint)key * width + c];
                }
                dTable[target + c] = sum;
            }
        }
    }

    // ---------------------------------------------------------------- host side

    public static void Forward(IlgpuDevice device, ArrayView<int> tokenIds, ArrayView<float> table, ArrayView<float> output, int width)
    {
        if (output.Length == 0) return;
        var p = device.Profile;
        device.Load<ArrayView<int>, ArrayView<float>, ArrayView<float>, int>(ForwardKernel)(
            new KernelConfig(p.Groups(output.Length, p.BlockThreads), p.BlockThreads), tokenIds, table, output, width);
    }

    /// <summary>Keys needed for <paramref name="count"/> tokens (a power of two).</summary>
    public static long KeyCount(int count) => count <= 1 ? 1 : 1L << (64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)count - 1));

    public static void Backward(IlgpuDevice device, ArrayView<int> tokenIds, ArrayView<float> dOutput, ArrayView<float> dTable,
        ArrayView<ulong> keys, int count, int width)
    {
        if (count == 0 || width == 0) return;
        var p = device.Profile;
        long size = keys.Length;
        device.Load<ArrayView<int>, ArrayView<ulong>, int>(MakeKeysKernel)(
            new KernelConfig(p.Groups(size, p.BlockThreads), p.BlockThreads), tokenIds, keys, count);
        var stage = device.Load<ArrayView<ulong>, int, int>(BitonicStageKernel);
        var config = new KernelConfig(p.Groups(size / 2, p.BlockThreads), p.BlockThreads);
        for (long k = 2; k <= size; k <<= 1)
            for (long j = k >> 1; j > 0; j >>= 1)
                stage(config, keys, (int)k, (int)j);
        device.Load<ArrayView<ulong>, ArrayView<float>, ArrayView<float>, int, int>(AccumulateRunsKernel)(
            new KernelConfig(p.Groups(count), p.BlockThreads), keys, dOutput, dTable, count, width);
    }
}

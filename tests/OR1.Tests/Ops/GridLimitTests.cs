using OR1.Native;
using OR1.Native.Emu;
using OR1.Native.Kernels;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

/// <summary>
/// Launches whose grid y or z would count past 65,535, the most a GPU launches there (the emulator refuses what
/// cuLaunchKernel refuses): attention over a micro-batch of more sequences than that (blockIdx.y is the sequence; the
/// launchers cover them in groups), and decode over a step of more rows (the batch is on the grid's x). Every row of the
/// outputs is poisoned first, so a group that was not launched, or one that read another group's offsets, shows.
/// On the Emu backend, which refuses a grid as cuLaunchKernel does: without the fixes these launches fail there.
/// </summary>
public sealed class GridLimitTests
{
    /// <summary>One more sequence than a grid's y holds, with a few longer ones in the second group, where the offsets a
    /// launch reads start at its first sequence.</summary>
    private const int Sequences = KernelLaunchers.MaxGridYZ + 2;

    private static int[] SequenceLengths()
    {
        var lengths = Enumerable.Repeat(1, Sequences).ToArray();
        lengths[3] = 5;
        lengths[KernelLaunchers.MaxGridYZ - 1] = 3; // the first group's last sequence
        lengths[KernelLaunchers.MaxGridYZ] = 17;    // the second group's first
        lengths[^1] = 2;
        return lengths;
    }

    /// <remarks>
    /// fp32 storage, so the CUDA-core kernels (attention_simt.cu) run: about 10 s on the emulator. The tensor-core kernels
    /// share the launchers' grouping and read the offsets the same way (attention_rows), but emulating their warp matrix
    /// instructions over 130,000 blocks takes minutes, so they are not run at this size.
    /// </remarks>
    [Test]
    public void AttentionCoversMoreSequencesThanAGridDimension()
    {
        using var backend = EmuOrIgnore.Open(() => new EmuBackend());
        var shape = new AttentionHeads(1, 1, 4);
        var lengths = SequenceLengths();
        int n = lengths.Sum();
        var offsets = TestData.OffsetsFromLengths(lengths);
        float scale = shape.DefaultScale;
        var q = TestData.Normal(n * shape.QueryWidth, 1);
        var k = TestData.Normal(n * shape.KvWidth, 2);
        var v = TestData.Normal(n * shape.KvWidth, 3);
        var dy = TestData.Normal(n * shape.QueryWidth, 4);
        using var qt = backend.Floats(q, n, shape.QueryWidth);
        using var kt = backend.Floats(k, n, shape.KvWidth);
        using var vt = backend.Floats(v, n, shape.KvWidth);
        using var dyt = backend.Floats(dy, n, shape.QueryWidth);
        using var seqs = Segments.FromLengths(backend, lengths);
        using var y = backend.Poisoned(n, shape.QueryWidth);
        using var lse = backend.Poisoned(n, shape.NumHeads);
        backend.AttentionForward(qt, kt, vt, seqs, shape, scale, y, lse);
        using var dq = backend.Poisoned(n, shape.QueryWidth);
        using var dk = backend.Poisoned(n, shape.KvWidth);
        using var dv = backend.Poisoned(n, shape.KvWidth);
        backend.AttentionBackward(dyt, qt, kt, vt, y, lse, seqs, shape, scale, dq, dk, dv);

        var (refY, refLse) = AttentionReference.Forward(TestData.ToDouble(q), TestData.ToDouble(k), TestData.ToDouble(v), offsets,
            shape.NumHeads, shape.NumKvHeads, shape.HeadDim, scale);
        var (refDq, refDk, refDv) = AttentionReference.Backward(TestData.ToDouble(dy), TestData.ToDouble(q), TestData.ToDouble(k), TestData.ToDouble(v),
            offsets, shape.NumHeads, shape.NumKvHeads, shape.HeadDim, scale);
        TensorAssert.Close(y.ToFloats(), refY, 2e-5, 1e-4, "attention output", [n, shape.NumHeads, shape.HeadDim]);
        TensorAssert.Close(lse.ToFloats(), refLse, 2e-5, 1e-5, "log-sum-exp", [n, shape.NumHeads]);
        TensorAssert.Close(dq.ToFloats(), refDq, 5e-5, 2e-4, "dq", [n, shape.NumHeads, shape.HeadDim]);
        TensorAssert.Close(dk.ToFloats(), refDk, 5e-5, 2e-4, "dk", [n, shape.NumKvHeads, shape.HeadDim]);
        TensorAssert.Close(dv.ToFloats(), refDv, 5e-5, 2e-4, "dv", [n, shape.NumKvHeads, shape.HeadDim]);
    }

    /// <summary>
    /// A decode step of more rows than a grid's y or z holds (a step's rows are its requests and a chunked prefill's
    /// positions), rows reading caches of 1 to 3 positions in 5 slots, against the double reference.
    /// </summary>
    [Test]
    public void DecodeCoversMoreRowsThanAGridDimension()
    {
        using var backend = EmuOrIgnore.Open(() => new EmuBackend());
        var shape = new AttentionHeads(4, 2, 8);
        const int batch = KernelLaunchers.MaxGridYZ + 2, slots = 5, maxLength = 3;
        var lengths = Enumerable.Range(0, batch).Select(b => 1 + b % maxLength).ToArray();
        var cacheSlots = Enumerable.Range(0, batch).Select(b => (7 * b + 1) % slots).ToArray();
        var keyCache = TestData.Normal(slots * maxLength * shape.KvWidth, 5);
        var valueCache = TestData.Normal(slots * maxLength * shape.KvWidth, 6);
        var q = TestData.Normal(batch * shape.QueryWidth, 7);
        using var qt = backend.Floats(q, batch, shape.QueryWidth);
        using var kc = backend.KeyCache(keyCache, slots, maxLength, shape.KvWidth);
        using var vc = backend.Floats(valueCache, slots, maxLength, shape.KvWidth);
        using var table = backend.Ints(cacheSlots, batch);
        using var lengthTensor = backend.Ints(lengths, batch);
        using var y = backend.Poisoned(batch, shape.QueryWidth);
        backend.AttentionDecode(qt, kc, vc, table, lengthTensor, shape, 0.3f, y);
        var expected = AttentionReference.Decode(TestData.ToDouble(q), TestData.ToDouble(keyCache), TestData.ToDouble(valueCache), cacheSlots, lengths,
            maxLength, shape.NumHeads, shape.NumKvHeads, shape.HeadDim, 0.3);
        TensorAssert.Close(y.ToFloats(), expected, 2e-5, 1e-4, "decode output", [batch, shape.NumHeads, shape.HeadDim]);
    }
}

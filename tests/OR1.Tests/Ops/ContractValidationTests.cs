using OR1.Native;
using OR1.Native.Cpu;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

/// <summary>
/// Bad input at the op-contract boundary: every case must raise an ArgumentException whose message
/// names the op, the argument and the expected versus actual value — never an IndexOutOfRange from
/// inside a kernel, never silent garbage.
/// </summary>
[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class ContractValidationTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    [Test]
    public void ShapeMismatchNamesOpArgumentAndShapes() =>
        ExpectArgumentError(() => Backend.RmsNormForward(Zeros(4, 64), Zeros(63), 1e-6f, Zeros(4, 64), Zeros(4)),
            "RmsNormForward", "'weight'", "[63]", "[64]");

    [Test]
    public void DtypeMismatchIsReported() =>
        ExpectArgumentError(() => Backend.SwiGluForward(Ints(new int[6], 2, 3), Zeros(2, 3), Zeros(2, 3)),
            "SwiGluForward", "'gate'", "Int32", "Float32");

    [Test]
    public void BufferOfAnotherBackendIsRejected()
    {
        using var other = new CpuBackend(threads: 2);
        using var foreign = other.Allocate(DType.Float32, new TensorShape(4, 8));
        ExpectArgumentError(() => Backend.Add(Zeros(4, 8), foreign, Zeros(4, 8)), "Add", "'b'", "buffer of the Cpu backend");
    }

    [Test]
    public void OffsetsThatDoNotAddUpAreRejected()
    {
        var heads = new AttentionHeads(2, 1, 4);
        ExpectArgumentError(() => Backend.AttentionForward(Zeros(5, 8), Zeros(5, 4), Zeros(5, 4), Lengths(2, 2), heads, 0.5f, Zeros(5, 8), Zeros(5, 2)),
            "AttentionForward", "'sequences'", "4", "5");
    }

    [Test]
    public void DecreasingOffsetsAreRejected()
    {
        var e = Assert.Throws<ArgumentException>(() => Segments.FromOffsets(Backend, [0, 3, 2]))!;
        Assert.That(e.Message, Does.Contain("must not decrease").And.Contain("offsets[2] = 2"));
    }

    [Test]
    public void OffsetsNotStartingAtZeroAreRejected() =>
        Assert.That(() => Segments.FromOffsets(Backend, [1, 3]), Throws.ArgumentException.With.Message.Contains("start at 0"));

    [Test]
    public void MatMulInnerDimensionMismatch() =>
        ExpectArgumentError(() => Backend.MatMul(Zeros(3, 4), false, Zeros(5, 6), false, Zeros(3, 6)), "MatMul", "'b'", "4", "5");

    [Test]
    public void MatMulOutputShapeMismatch() =>
        ExpectArgumentError(() => Backend.MatMul(Zeros(3, 4), false, Zeros(6, 4), true, Zeros(3, 5)), "MatMul", "'c'", "[3, 6]");

    [Test]
    public void KvHeadsMustDivideQueryHeads() =>
        ExpectArgumentError(() => Backend.AttentionForward(Zeros(2, 12), Zeros(2, 8), Zeros(2, 8), Lengths(2), new AttentionHeads(3, 2, 4), 0.5f, Zeros(2, 12), Zeros(2, 3)),
            "AttentionForward", "kv heads must divide");

    // Index values held on the device are checked by the kernels that use them and reported at the next
    // synchronisation (a GPU does not wait for the host per op), so these cases synchronise after the op; the Cpu
    // backend raises at the op itself. DeviceIndexCheckTests covers when and how the kernel backends report.

    [Test]
    public void TokenIdOutsideVocabularyIsAnArgumentError() =>
        ExpectArgumentError(() => { Backend.EmbeddingForward(Ints([0, 7, 10], 3), Zeros(10, 4), Zeros(3, 4)); Backend.Synchronize(); },
            "EmbeddingForward", "'tokenIds'", "10", "position 2");

    [Test]
    public void LogProbTargetOutsideVocabularyIsAnArgumentError() =>
        ExpectArgumentError(() => { Backend.LogProbForward(Zeros(2, 4), Zeros(5, 4), Ints([1, -1], 2), 1f, Zeros(2), Zeros(2), Zeros(2)); Backend.Synchronize(); },
            "LogProbForward", "'targets'", "-1", "row 1");

    [Test]
    public void DecodeSlotOutsideCacheIsAnArgumentError() =>
        ExpectArgumentError(() =>
            {
                Backend.AttentionDecode(Zeros(1, 8), Zeros(2, 4, 8), Zeros(2, 4, 8), Ints([2], 1), Ints([1], 1), new AttentionHeads(2, 2, 4), 0.5f, Zeros(1, 8));
                Backend.Synchronize();
            },
            "AttentionDecode", "pageTable[0] = 2");

    [Test]
    public void RopeNeedsAnEvenHeadDimension() =>
        ExpectArgumentError(() => Backend.RopeForward(Zeros(2, 6), Ints([0, 1], 2), 2, 3, 10000f, Zeros(2, 6)), "RopeForward", "'headDim'", "even");

    [Test]
    public void UploadOfTheWrongLengthIsRejected() =>
        ExpectArgumentError(() => Backend.Upload<float>(new float[5], Zeros(2, 3)), "Upload", "5", "6");

    [Test]
    public void DisposedTensorIsRejected()
    {
        var t = Backend.Zeros(4);
        t.Dispose();
        ExpectArgumentError(() => Backend.Scale(t, 2f), "Scale", "disposed");
    }

    [Test]
    public void MatMulOutputMayNotOverlapAnInput()
    {
        var buffer = Zeros(8, 8);
        ExpectArgumentError(() => Backend.MatMul(buffer.SliceRows(0, 4), false, Zeros(8, 8), false, buffer.SliceRows(2, 4)), "MatMul", "overlaps");
    }

    [Test]
    public void PolicyLossClipOutsideRangeIsRejected()
    {
        var x = Zeros(3);
        ExpectArgumentError(() => Backend.PolicyLossForward(x, x, x, x, x, null, new PolicyLossOptions(ClipLow: 1.5f), Zeros(PolicyLossTerms.Count)),
            "PolicyLossForward", "ClipLow", "1.5");
    }
}

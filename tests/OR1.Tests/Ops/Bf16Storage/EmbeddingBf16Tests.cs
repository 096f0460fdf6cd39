using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.Bf16Storage;

/// <summary>
/// Embedding with a bf16 table (kernels/embedding.cu). Forward: the output rows are copies of table rows, so they must
/// be bit-identical (any bf16 pattern, NaN payloads included). Backward: dOutput is bf16, dTable is the fp32 parameter
/// gradient and accumulates; repeated ids add their rows in fp32. The reference sums the same bf16 values in double,
/// so the only error is the fp32 summation: an element that sums 1 + r terms (its old value and r repeated rows) errs
/// by at most gamma_r = r * 2^-24 / (1 - r * 2^-24) times the sum of the terms' magnitudes, whatever the order. The
/// absolute tolerance is that bound over the whole table, computed from the data with (r_max + 1) * 2^-24 for gamma
/// (a few 1e-7 for a couple of repeats, ~3e-4 for a vocabulary of 3 under 200 tokens). A dTable rounded to bf16 would
/// be off by up to 2^-8 relative; dOutput read with the wrong dtype would be garbage.
/// </summary>
[TestFixtureSource(typeof(Bf16BackendCases), nameof(Bf16BackendCases.All))]
public sealed class EmbeddingBf16Tests(BackendCase backendCase) : OpTestBase(backendCase)
{
    /// <summary>Widths on the 8-element pack (64, 80, 896) and off it; an offset puts every tensor off the 16-byte grid.</summary>
    [TestCase(50, 1, 7)]
    [TestCase(50, 33, 64)]
    [TestCase(1000, 896, 40)]
    [TestCase(3, 129, 200)]
    [TestCase(100, 80, 17)]
    [TestCase(50, 67, 129, 1)]
    [TestCase(30, 64, 17, 3)]
    public void ForwardCopiesRowsAndBackwardAccumulatesInFp32(int vocab, int width, int count, int offset = 0)
    {
        var random = new Random(vocab + width);
        var tableBits = Enumerable.Range(0, vocab * width).Select(_ => new BFloat16((ushort)random.Next(0x10000))).ToArray();
        var table = PoisonedViewAt(offset, DType.BFloat16, vocab, width);
        Backend.Upload<BFloat16>(tableBits, table);
        // Ids with repeats (a vocabulary of 3 under 200 tokens repeats each ~67 times), the first and last id included.
        var ids = TestData.Ints(count, vocab, count);
        ids[0] = vocab - 1;
        ids[^1] = 0;
        var idTensor = Ints(ids, count);

        var output = PoisonedViewAt(offset, DType.BFloat16, count, width);
        Backend.EmbeddingForward(idTensor, table, output);
        var expected = new BFloat16[count * width];
        for (int n = 0; n < count; n++) Array.Copy(tableBits, ids[n] * width, expected, n * width, width);
        Bf16Bits.Equal(output.ToBFloat16s(), expected, "embedding rows (bf16 copies)", [count, width], exactNaNs: true);

        var dOut = Bf16.Round(TestData.Uniform(count * width, count + 1, -2, 2));
        var dTableInit = TestData.Uniform(vocab * width, vocab + 3);
        var dTable = ViewAt(offset, DType.Float32, dTableInit, vocab, width);
        Backend.EmbeddingBackward(idTensor, ViewAt(offset, DType.BFloat16, dOut, count, width), dTable);
        var reference = TestData.ToDouble(dTableInit);
        EmbeddingReference.Backward(ids, TestData.ToDouble(dOut), vocab, width, reference);
        // Each element is a recursive fp32 sum of 1 + r terms (r = the id's repeats), so it errs by at most
        // r * 2^-24 * (the sum of the terms' magnitudes) in any order: the bound, computed from the data.
        var magnitudes = TestData.ToDouble(dTableInit).Select(Math.Abs).ToArray();
        EmbeddingReference.Backward(ids, dOut.Select(v => (double)Math.Abs(v)).ToArray(), vocab, width, magnitudes);
        int repeats = ids.GroupBy(id => id).Max(g => g.Count());
        double atol = (repeats + 1) * Math.Pow(2, -24) * magnitudes.Max();
        TensorAssert.Close(dTable.ToFloats(), reference, atol, 0, $"dTable (fp32, accumulated; up to {repeats} repeats of an id)", [vocab, width]);
    }

    [Test]
    public void TableGradientMustBeFp32() =>
        Assert.That(() => Backend.EmbeddingBackward(Ints([0, 1], 2), Own(Backend.PoisonedBFloat16(2, 3)), Own(Backend.PoisonedBFloat16(4, 3))),
            Throws.ArgumentException.With.Message.Contains("EmbeddingBackward").And.Message.Contains("'dTable'").And.Message.Contains("expected Float32"));

    [Test]
    public void OutputMustShareTheTableDtype() =>
        Assert.That(() => Backend.EmbeddingForward(Ints([0, 1], 2), Own(Backend.PoisonedBFloat16(4, 3)), Zeros(2, 3)),
            Throws.ArgumentException.With.Message.Contains("EmbeddingForward").And.Message.Contains("'output'").And.Message.Contains("expected BFloat16"));
}

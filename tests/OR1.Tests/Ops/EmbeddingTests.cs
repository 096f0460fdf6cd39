using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class EmbeddingTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    /// <summary>Widths on the 4-float pack (64, 80, 1536) and off it; an offset puts every tensor off the 16-byte grid.</summary>
    [TestCase(1, 1, 1)]
    [TestCase(5, 11, 7)]
    [TestCase(2000, 50, 64)]
    [TestCase(37, 1000, 129)]
    [TestCase(17, 100, 80)]
    [TestCase(129, 50, 67, 1)]
    [TestCase(17, 30, 64, 2)]
    [TestCase(1, 10, 1536, 3)]
    public void ForwardAndBackwardMatchReference(int count, int vocab, int width, int offset = 0)
    {
        var f32 = DType.Float32;
        var ids = TestData.Ints(count, vocab, count + vocab);
        var table = TestData.Uniform(vocab * width, 2);
        var y = PoisonedViewAt(offset, f32, count, width);
        Backend.EmbeddingForward(Ints(ids, count), ViewAt(offset, f32, table, vocab, width), y);
        TensorAssert.Close(y.ToFloats(), EmbeddingReference.Forward(ids, TestData.ToDouble(table), vocab, width), 0, 0, "embedding rows", [count, width]);

        var dy = TestData.Uniform(count * width, 3);
        var initial = TestData.Uniform(vocab * width, 4);
        var dTable = ViewAt(offset, f32, initial, vocab, width);
        Backend.EmbeddingBackward(Ints(ids, count), ViewAt(offset, f32, dy, count, width), dTable);
        var expected = TestData.ToDouble(initial);
        EmbeddingReference.Backward(ids, TestData.ToDouble(dy), vocab, width, expected);
        TensorAssert.Close(dTable.ToFloats(), expected, Tol(1e-5), Tol(1e-5), "dTable (accumulated)", [vocab, width]);
    }

    [Test]
    public void RepeatedIdsAccumulateDeterministically()
    {
        var ids = Enumerable.Repeat(3, 5000).Concat(Enumerable.Repeat(1, 7)).ToArray();
        var dy = TestData.Uniform(ids.Length * 40, 8);
        float[] Run()
        {
            var dTable = Zeros(4, 40);
            Backend.EmbeddingBackward(Ints(ids, ids.Length), Floats(dy, ids.Length, 40), dTable);
            return dTable.ToFloats();
        }
        var first = Run();
        Assert.That(Run(), Is.EqualTo(first), "same inputs must give bit-identical gradients");
        Assert.That(first.Take(40), Is.All.EqualTo(0f), "row 0 was never looked up");
    }
}

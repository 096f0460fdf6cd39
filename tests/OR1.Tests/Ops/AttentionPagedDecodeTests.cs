using OR1.Native;
using OR1.Tests.Reference;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

/// <summary>
/// Decode attention through a page table (the rollout engine's paged KV cache): the same rows held in pages scattered
/// over the cache in shuffled order give the double reference's output and the contiguous cache's, at lengths on both
/// sides of page boundaries; table entries past a row's length are never read (they hold -1 here). The keys go in
/// through WriteKeyCache, in the backend's layout.
/// </summary>
[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class AttentionPagedDecodeTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    public static IEnumerable<TestCaseData> Cases()
    {
        yield return new TestCaseData(16, new[] { 15, 16, 17, 33 }, 7, 1, 12).SetArgDisplayNames("pages of 16", "lengths 15 16 17 33", "7/1 heads of 12");
        yield return new TestCaseData(5, new[] { 1, 5, 6, 24 }, 4, 2, 16).SetArgDisplayNames("pages of 5", "lengths 1 5 6 24", "4/2 heads of 16");
        yield return new TestCaseData(128, new[] { 127, 129, 300 }, 6, 2, 64).SetArgDisplayNames("pages of 128", "lengths 127 129 300", "6/2 heads of 64");
        yield return new TestCaseData(16, new[] { 1000 }, 8, 1, 64).SetArgDisplayNames("pages of 16", "one row of 1000 (split)", "8/1 heads of 64");
    }

    [TestCaseSource(nameof(Cases))]
    public void PagedDecodeMatchesTheReferenceAndTheContiguousCache(int pageSize, int[] lengths, int heads, int kvHeads, int headDim)
    {
        SkipIfLarge(lengths.Max() > 100, $"caches of up to {lengths.Max()} positions");
        var shape = new AttentionHeads(heads, kvHeads, headDim);
        int batch = lengths.Length, width = shape.KvWidth;
        int pagesPerRow = (lengths.Max() + pageSize - 1) / pageSize, capacity = pagesPerRow * pageSize;
        var keys = TestData.Normal(batch * capacity * width, 11);
        var values = TestData.Normal(batch * capacity * width, 12);
        var q = TestData.Normal(batch * shape.QueryWidth, 13);

        // Pages in a shuffled order with two unused pages among them; entries past a row's length are -1.
        int used = lengths.Sum(l => (l + pageSize - 1) / pageSize), pages = used + 2;
        var order = Enumerable.Range(0, pages).OrderBy(p => (p * 7919 + 13) % pages).ToArray();
        var table = Enumerable.Repeat(-1, batch * pagesPerRow).ToArray();
        var pagedKeys = new float[pages * pageSize * width];
        var pagedValues = new float[pages * pageSize * width];
        for (int b = 0, next = 0; b < batch; b++)
            for (int i = 0; i < (lengths[b] + pageSize - 1) / pageSize; i++)
            {
                int page = order[next++];
                table[b * pagesPerRow + i] = page;
                for (int r = 0; r < pageSize && i * pageSize + r < lengths[b]; r++)
                {
                    long from = ((long)b * capacity + i * pageSize + r) * width, to = ((long)page * pageSize + r) * width;
                    Array.Copy(keys, from, pagedKeys, to, width);
                    Array.Copy(values, from, pagedValues, to, width);
                }
            }

        var paged = Poisoned(batch, shape.QueryWidth);
        Backend.AttentionDecode(Floats(q, batch, shape.QueryWidth), KeyCache(pagedKeys, pages, pageSize, width), Floats(pagedValues, pages, pageSize, width),
            Ints(table, batch, pagesPerRow), Ints(lengths, batch), shape, shape.DefaultScale, paged);
        var contiguous = Poisoned(batch, shape.QueryWidth);
        var slots = Enumerable.Range(0, batch).ToArray();
        Backend.AttentionDecode(Floats(q, batch, shape.QueryWidth), KeyCache(keys, batch, capacity, width), Floats(values, batch, capacity, width),
            Ints(slots, batch), Ints(lengths, batch), shape, shape.DefaultScale, contiguous);
        var expected = AttentionReference.Decode(TestData.ToDouble(q), TestData.ToDouble(keys), TestData.ToDouble(values), slots, lengths, capacity,
            heads, kvHeads, headDim, shape.DefaultScale);

        TensorAssert.Close(paged.ToFloats(), expected, Tol(2e-5), Tol(1e-4), "paged decode vs the reference", [batch, heads, headDim]);
        TensorAssert.Close(paged.ToFloats(), contiguous.ToFloats(), Tol(1e-5), Tol(1e-5), "paged decode vs the contiguous cache", [batch, heads, headDim]);
    }

    [Test]
    public void ALengthBeyondTheTablesPagesAndABadPageAreRefused()
    {
        var heads = new AttentionHeads(2, 2, 4);
        ExpectArgumentError(() =>
            {
                Backend.AttentionDecode(Zeros(1, 8), Zeros(4, 4, 8), Zeros(4, 4, 8), Ints([0, 1], 1, 2), Ints([9], 1), heads, 0.5f, Zeros(1, 8));
                Backend.Synchronize();
            },
            "AttentionDecode", "lengths[0] = 9", "[1, 8]");
        ExpectArgumentError(() =>
            {
                Backend.AttentionDecode(Zeros(1, 8), Zeros(4, 4, 8), Zeros(4, 4, 8), Ints([0, 4], 1, 2), Ints([6], 1), heads, 0.5f, Zeros(1, 8));
                Backend.Synchronize();
            },
            "AttentionDecode", "= 4", "[0, 4)");
        ExpectArgumentError(() => Backend.AttentionDecode(Zeros(1, 8), Zeros(4, 4, 8), Zeros(4, 4, 8), Ints([0, 1, 2], 3), Ints([6], 1), heads, 0.5f, Zeros(1, 8)),
            "AttentionDecode", "'pageTable'", "[1, pages per row]");
    }

    [Test]
    public void WriteKeyCachePutsEachKeyWhereTheBackendsLayoutSays()
    {
        const int pages = 3, pageSize = 5, width = 6;
        int[] cacheRows = [7, 0, 14, 5, 9, 1];
        var keys = TestData.Normal(cacheRows.Length * width, 21);
        var cache = Own(Backend.Allocate(DType.Float32, new TensorShape(pages, pageSize, width)));
        Backend.Fill(cache, -7f);
        Backend.WriteKeyCache(Floats(keys, cacheRows.Length, width), Ints(cacheRows, cacheRows.Length), cache);
        var got = cache.ToFloats();

        var expected = Enumerable.Repeat(-7f, pages * pageSize * width).ToArray();
        for (int i = 0; i < cacheRows.Length; i++)
        {
            int page = cacheRows[i] / pageSize, position = cacheRows[i] % pageSize;
            for (int c = 0; c < width; c++)
            {
                int at = Backend.KeyCacheLayout == KeyCacheLayout.PageTransposed
                    ? (page * pageSize * width) + (c * pageSize) + position
                    : (cacheRows[i] * width) + c;
                expected[at] = keys[(i * width) + c];
            }
        }
        Assert.That(got, Is.EqualTo(expected), $"the {Backend.KeyCacheLayout} layout");
        // The Cpu decode reads keys transposed within a page (its score products read them where they are); the kernel
        // backends read rows.
        Assert.That(Backend.KeyCacheLayout, Is.EqualTo(Backend.Kind == BackendKind.Cpu ? KeyCacheLayout.PageTransposed : KeyCacheLayout.Rows));
    }

    [Test]
    public void WriteKeyCacheRefusesARowOutsideTheCacheAndMismatchedShapes()
    {
        ExpectArgumentError(() =>
            {
                Backend.WriteKeyCache(Zeros(2, 4), Ints([3, 8], 2), Zeros(2, 4, 4));
                Backend.Synchronize();
            },
            "WriteKeyCache", "'cacheRows'", "8 at position 1", "[0, 8)");
        ExpectArgumentError(() => Backend.WriteKeyCache(Zeros(2, 4), Ints([0, 1], 2), Zeros(2, 4, 6)),
            "WriteKeyCache", "'keyCache'", "[pages, pageSize, 4]");
        ExpectArgumentError(() => Backend.WriteKeyCache(Zeros(2, 4), Ints([0, 1, 2], 3), Zeros(2, 4, 4)),
            "WriteKeyCache", "'cacheRows'");
    }
}

using OR1.Native;
using OR1.Native.Cpu;
using OR1.Tests.Support;

namespace OR1.Tests.Cpu;

/// <summary>
/// The Cpu backend's decode attention gives the bits of its forward attention for the same query row: the cache read
/// through pages of any size (blocks crossing pages), rows alone (cut into spans across threads) or in a batch of rows of
/// other lengths, and the forward's row anywhere in a packed batch. This is what makes the rollout engine's log-probs the
/// trainer's; compared with == on the float bits.
/// </summary>
public sealed class BatchInvariantAttentionTests
{
    [TestCase(6, 2, 32, 16, 700)]
    [TestCase(6, 2, 32, 128, 600)]
    [TestCase(4, 4, 20, 48, 530)]   // head dim not a multiple of 8, pages that do not divide a block
    [TestCase(8, 1, 128, 5, 300)]
    public void DecodeGivesTheForwardsBits(int heads, int kvHeads, int headDim, int pageSize, int length)
    {
        using var cpu = new CpuBackend();
        var shape = new AttentionHeads(heads, kvHeads, headDim);
        int qw = shape.QueryWidth, kw = shape.KvWidth;
        // The sequence sits after another one in the packed forward, so its tiles start mid-block.
        const int before = 37;
        int n = before + length;
        var q = TestData.Normal(n * qw, 21);
        var k = TestData.Normal(n * kw, 22);
        var v = TestData.Normal(n * kw, 23);
        using var output = cpu.Zeros(n, qw);
        using var lse = cpu.Zeros(n, heads);
        cpu.AttentionForward(cpu.Floats(q, n, qw), cpu.Floats(k, n, kw), cpu.Floats(v, n, kw), Segments.FromLengths(cpu, [before, length]), shape, shape.DefaultScale, output, lse);
        var forward = output.ToFloats();

        // The sequence's keys and values in pages laid out in reverse order.
        int pages = (length + pageSize - 1) / pageSize;
        var cacheKeys = new float[pages * pageSize * kw];
        var cacheValues = new float[pages * pageSize * kw];
        var table = new int[pages];
        for (int i = 0; i < pages; i++)
        {
            table[i] = pages - 1 - i;
            for (int r = 0; r < pageSize && i * pageSize + r < length; r++)
            {
                Array.Copy(k, (long)(before + i * pageSize + r) * kw, cacheKeys, (long)(table[i] * pageSize + r) * kw, kw);
                Array.Copy(v, (long)(before + i * pageSize + r) * kw, cacheValues, (long)(table[i] * pageSize + r) * kw, kw);
            }
        }
        using var keyCache = cpu.KeyCache(cacheKeys, pages, pageSize, kw);
        using var valueCache = cpu.Floats(cacheValues, pages, pageSize, kw);

        // Every position alone (batch 1: rows over a span are cut across threads), then in batches of 7 of mixed lengths.
        var positions = Enumerable.Range(0, length).ToArray();
        foreach (int batch in new[] { 1, 7 })
        {
            int differing = 0, first = -1;
            for (int start = 0; start < length; start += batch)
            {
                var rows = positions.Skip(start).Take(batch).Reverse().ToArray();
                int b = rows.Length;
                var queries = new float[b * qw];
                for (int i = 0; i < b; i++) Array.Copy(q, (long)(before + rows[i]) * qw, queries, (long)i * qw, qw);
                var tables = Enumerable.Range(0, b).SelectMany(_ => table).ToArray();
                using var decoded = cpu.Zeros(b, qw);
                cpu.AttentionDecode(cpu.Floats(queries, b, qw), keyCache, valueCache, cpu.Ints(tables, b, pages), cpu.Ints(rows.Select(p => p + 1).ToArray(), b),
                    shape, shape.DefaultScale, decoded);
                var got = decoded.ToFloats();
                for (int i = 0; i < b; i++)
                    for (int x = 0; x < qw; x++)
                        if (BitConverter.SingleToInt32Bits(got[i * qw + x]) != BitConverter.SingleToInt32Bits(forward[(before + rows[i]) * qw + x]))
                        {
                            differing++;
                            if (first < 0) first = rows[i];
                        }
            }
            Assert.That(differing, Is.EqualTo(0), $"batch {batch}: {differing} output values differ from the forward's (first at position {first})");
        }
    }
}

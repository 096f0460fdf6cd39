using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

/// <summary>
/// The decode loop's stop rules on the device (<see cref="IBackend.AdvanceDecode"/>) against a plain reference written
/// from the contract: rows running, stopping at their length limit, stopping at a stop token and already stopped;
/// running rows that cross a page boundary; the stop rules alone (no next inputs); a running row whose next position
/// has no page is refused, naming the row and the position.
/// </summary>
[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class DecodeAdvanceTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    private sealed record State(int[] Remaining, int[] Emitted, int[] Tokens, int[] Positions, int[] Lengths, int[] Streams, int[] CacheRows);

    /// <summary>The contract, row by row, in the plainest terms.</summary>
    private static State Reference(int[] sampled, int[] stops, State s, int[] table, int width, int pageSize, int sink, bool advance)
    {
        var r = new State((int[])s.Remaining.Clone(), (int[])s.Emitted.Clone(), (int[])s.Tokens.Clone(), (int[])s.Positions.Clone(),
            (int[])s.Lengths.Clone(), (int[])s.Streams.Clone(), (int[])s.CacheRows.Clone());
        for (int b = 0; b < sampled.Length; b++)
        {
            bool wasRunning = r.Remaining[b] > 0;
            if (!wasRunning) r.Emitted[b] = -1;
            else
            {
                r.Emitted[b] = sampled[b];
                r.Remaining[b] = stops.Contains(sampled[b]) ? -1 : r.Remaining[b] - 1;
            }
            if (!advance) continue;
            if (r.Remaining[b] <= 0) r.CacheRows[b] = sink;
            else
            {
                int p = r.Positions[b] + 1;
                r.Tokens[b] = sampled[b];
                r.Positions[b] = p;
                r.Lengths[b] = p + 1;
                r.Streams[2 * b + 1]++;
                r.CacheRows[b] = table[b * width + p / pageSize] * pageSize + p % pageSize;
            }
        }
        return r;
    }

    [TestCase(true)]
    [TestCase(false)]
    public void RowsStopAndAdvanceAsTheContractSays(bool advance)
    {
        const int rows = 300, width = 5, pageSize = 4, sink = 999;
        var random = new Random(advance ? 41 : 42);
        int[] stops = [7, 11, 3];
        var sampled = new int[rows];
        var remaining = new int[rows];
        var positions = new int[rows];
        var table = new int[rows * width];
        for (int b = 0; b < rows; b++)
        {
            // Rows already stopped (0, -1), on their last token (1), and running with room; a tenth sample a stop token.
            remaining[b] = (b % 6) switch { 0 => 0, 1 => -1, 2 => 1, _ => random.Next(2, 50) };
            sampled[b] = b % 10 == 4 ? stops[b % 3] : random.Next(20, 5000);
            positions[b] = random.Next(0, width * pageSize - 1); // the next position is always within the table
            for (int i = 0; i < width; i++) table[b * width + i] = random.Next(0, 200);
        }
        var state = new State(remaining, Enumerable.Repeat(12345, rows).ToArray(), Enumerable.Range(0, rows).Select(b => 60 + b).ToArray(), positions,
            positions.Select(p => p + 1).ToArray(), Enumerable.Range(0, 2 * rows).Select(i => i % 2 == 0 ? i / 2 : 3 + i % 7).ToArray(),
            Enumerable.Range(0, rows).Select(b => 7 * b).ToArray());
        var expected = Reference(sampled, stops, state, table, width, pageSize, sink, advance);

        var remainingT = Ints(state.Remaining, rows);
        var emittedT = Ints(state.Emitted, rows);
        var next = new DecodeInputs(Ints(state.Tokens, rows), Ints(state.Positions, rows), Ints(state.Lengths, rows), Ints(state.Streams, rows, 2),
            Ints(state.CacheRows, rows), Ints(table, rows, width), pageSize, sink);
        Backend.AdvanceDecode(Ints(sampled, rows), Ints(stops, stops.Length), remainingT, emittedT, advance ? next : null);

        Assert.That(remainingT.ToInts(), Is.EqualTo(expected.Remaining), "remaining");
        Assert.That(emittedT.ToInts(), Is.EqualTo(expected.Emitted), "emitted");
        Assert.That(next.Tokens.ToInts(), Is.EqualTo(expected.Tokens), "tokens");
        Assert.That(next.Positions.ToInts(), Is.EqualTo(expected.Positions), "positions");
        Assert.That(next.Lengths.ToInts(), Is.EqualTo(expected.Lengths), "lengths");
        Assert.That(next.Streams.ToInts(), Is.EqualTo(expected.Streams), "streams");
        Assert.That(next.CacheRows.ToInts(), Is.EqualTo(expected.CacheRows), "cache rows");
        // The cases the rows were built to cover all occurred.
        Assert.That(expected.Remaining, Does.Contain(0).And.Contain(-1));
        Assert.That(Enumerable.Range(0, rows).Count(b => remaining[b] > 1 && expected.Remaining[b] == -1), Is.GreaterThan(0), "a running row stopped by a token");
        if (advance)
            Assert.That(Enumerable.Range(0, rows).Count(b => expected.Remaining[b] > 0 && expected.Positions[b] % pageSize == 0), Is.GreaterThan(0),
                "a running row moved on to a new page");
    }

    [Test]
    public void NoStopTokensOnlyTheLengthStops()
    {
        var remaining = Ints([3, 1, 0], 3);
        var emittedInts = Ints([9, 9, 9], 3);
        Backend.AdvanceDecode(Ints([5, 6, 7], 3), null, remaining, emittedInts);
        Assert.That(remaining.ToInts(), Is.EqualTo(new[] { 2, 0, 0 }));
        Assert.That(emittedInts.ToInts(), Is.EqualTo(new[] { 5, 6, -1 }));
    }

    [Test]
    public void ARunningRowWithoutItsNextPageIsRefused()
    {
        // Row 1 goes on to position 4, slot 1 of its table row, which holds -1.
        var next = new DecodeInputs(Ints([0, 0], 2), Ints([1, 3], 2), Ints([2, 4], 2), Ints([0, 0, 1, 0], 2, 2), Ints([0, 0], 2),
            Ints([2, 3, 5, -1], 2, 2), 4, 40);
        ExpectArgumentError(() =>
            {
                Backend.AdvanceDecode(Ints([8, 9], 2), null, Ints([5, 5], 2), Ints([0, 0], 2), next);
                Backend.Synchronize();
            },
            "AdvanceDecode", "row 1 goes on to position 4", "holds no page");
        ExpectArgumentError(() => Backend.AdvanceDecode(Ints([8, 9], 2), null, Ints([5, 5, 5], 3), Ints([0, 0], 2)), "AdvanceDecode", "'remaining'");
        ExpectArgumentError(() => Backend.AdvanceDecode(Ints([8, 9], 2), null, Ints([5, 5], 2), Ints([0, 0], 2), next with { PageSize = 0 }),
            "AdvanceDecode", "'next.PageSize'");
    }
}

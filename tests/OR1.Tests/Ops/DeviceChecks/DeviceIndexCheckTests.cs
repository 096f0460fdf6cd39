using OR1.Native;
using OR1.Native.Kernels;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.DeviceChecks;

/// <summary>
/// The kernel backends check index values that only the device holds inside the kernels that use them and report a
/// bad one at the next synchronisation, so no op waits for the host: the op itself returns, the next blocking read
/// raises the op's ArgumentException (argument, position, value, range), the first failing op in issue order is the
/// one named, the record is clean afterwards, the bad value is never dereferenced, and debug sync raises at the op.
/// </summary>
[TestFixtureSource(typeof(Bf16BackendCases), nameof(Bf16BackendCases.All))]
public sealed class DeviceIndexCheckTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    private KernelBackend Kernels => (KernelBackend)Backend;

    private static void ExpectReport(TestDelegate call, params string[] fragments)
    {
        var e = Assert.Throws<ArgumentException>(call)!;
        foreach (var fragment in fragments) Assert.That(e.Message, Does.Contain(fragment), $"message was: {e.Message}");
    }

    [Test]
    public void ABadIdCostsTheOpNoWaitAndIsRaisedByTheNextRead()
    {
        var table = Floats(TestData.Uniform(40, 1), 10, 4);
        var output = Zeros(3, 4);
        var ids = Ints([0, 7, 10], 3);
        var before = Kernels.Counters;
        Assert.DoesNotThrow(() => Backend.EmbeddingForward(ids, table, output));
        var op = Kernels.Counters - before;
        Assert.That(op.Synchronizations, Is.Zero, $"the op waited for the host: {op}");
        Assert.That(op.Launches, Is.EqualTo(1), $"the check is part of the embedding kernel, not a launch of its own: {op}");
        ExpectReport(() => output.ToFloats(), "EmbeddingForward", "'tokenIds'", "id 10", "position 2", "[0, 10)", "next synchronisation");

        // The bad row is zeroed, never read from outside the table; the good rows are copied.
        float[] got = output.ToFloats(), t = table.ToFloats();
        Assert.That(got.AsSpan(0, 4).ToArray(), Is.EqualTo(t.AsSpan(0, 4).ToArray()));
        Assert.That(got.AsSpan(4, 4).ToArray(), Is.EqualTo(t.AsSpan(28, 4).ToArray()));
        Assert.That(got.AsSpan(8, 4).ToArray(), Is.All.EqualTo(0f));
    }

    [Test]
    public void TheFirstFailingOpInIssueOrderIsNamedAndTheRecordIsCleanAfterwards()
    {
        var hidden = Zeros(2, 4);
        var weight = Zeros(5, 4);
        Backend.EmbeddingForward(Ints([1, 2], 2), Zeros(10, 4), Zeros(2, 4));                          // good
        Backend.LogProbForward(hidden, weight, Ints([1, 9, -3], 3).SliceRows(0, 2), 1f, Zeros(2), Zeros(2), Zeros(2)); // bad: 9 at row 1
        Backend.GatherRows(Zeros(4, 3), Ints([3, -1, 5], 3), Zeros(3, 3));                             // bad too, later
        ExpectReport(() => Backend.Synchronize(), "LogProbForward", "'targets'", "token 9", "row 1", "[0, 5)");
        Assert.DoesNotThrow(() => Backend.Synchronize(), "the record was not reset after the report");
        Backend.GatherRows(Zeros(4, 3), Ints([0, 3], 2), Zeros(2, 3));
        Assert.DoesNotThrow(() => Backend.Synchronize(), "a good op after a report was blamed");
    }

    [Test]
    public void TheSmallestBadPositionIsReportedWhateverTheThreadOrder()
    {
        var ids = new int[3000];
        for (int i = 0; i < ids.Length; i++) ids[i] = i % 7;
        ids[2999] = 99;
        ids[1234] = -5;
        ids[2000] = 1 << 30;
        ExpectReport(() =>
            {
                Backend.GatherRows(Zeros(7, 2), Ints(ids, ids.Length), Zeros(ids.Length, 2));
                Backend.Synchronize();
            },
            "GatherRows", "'rowIndices'", "-5 at position 1234", "[0, 7)");
    }

    [Test]
    public void EveryCheckingOpReportsWithItsOwnWords()
    {
        var heads = new AttentionHeads(2, 2, 4);
        ExpectReport(() => { Backend.ScatterRows(Zeros(2, 3), Ints([0, 4], 2), Zeros(4, 3)); Backend.Synchronize(); },
            "ScatterRows", "'rowIndices'", "4 at position 1", "[0, 4)");
        ExpectReport(() => { Backend.RopeForward(Zeros(3, 8), Ints([0, -2, 1], 3), 2, 4, 10000f, Zeros(3, 8)); Backend.Synchronize(); },
            "RopeForward", "'positions'", "-2 at row 1", "non-negative");
        ExpectReport(() => { Backend.RopeBackward(Zeros(2, 8), Ints([-1, 0], 2), 2, 4, 10000f, Zeros(2, 8)); Backend.Synchronize(); },
            "RopeBackward", "'positions'", "-1 at row 0");
        ExpectReport(() => { Backend.EmbeddingBackward(Ints([3, 12], 2), Zeros(2, 4), Zeros(10, 4)); Backend.Synchronize(); },
            "EmbeddingBackward", "'tokenIds'", "id 12", "position 1");
        ExpectReport(() =>
            {
                Backend.AttentionDecode(Zeros(2, 8), Zeros(2, 4, 8), Zeros(2, 4, 8), Ints([1, 0], 2), Ints([4, 5], 2), heads, 0.5f, Zeros(2, 8));
                Backend.Synchronize();
            },
            "AttentionDecode", "lengths[1] = 5", "[1, 4]");
        ExpectReport(() =>
            {
                Backend.AttentionDecode(Zeros(1, 8), Zeros(2, 4, 8), Zeros(2, 4, 8), Ints([-1], 1), Ints([1], 1), heads, 0.5f, Zeros(1, 8));
                Backend.Synchronize();
            },
            "AttentionDecode", "pageTable[0] = -1", "[0, 2)");
        ExpectReport(() =>
            {
                Backend.LogProbBackward(Zeros(2), null, Zeros(2, 4), Zeros(5, 4), Ints([0, 5], 2), 1f, Zeros(2), Zeros(2), Zeros(2, 4), Zeros(5, 4));
                Backend.Synchronize();
            },
            "LogProbBackward", "'targets'", "token 5", "row 1");
    }

    [Test]
    public void MoreChecksThanTheRingBetweenTwoReadsStillReportTheFirstBadOne()
    {
        var input = Floats(TestData.Uniform(16, 2), 2, 8);
        var output = Zeros(2, 8);
        var good = Ints([0, 1], 2);
        int checks = DeviceErrors.Ring * 2 + 17;
        var before = Kernels.Counters;
        for (int i = 0; i < checks; i++) Backend.RopeForward(input, good, 2, 4, 10000f, output);
        var spent = Kernels.Counters - before;
        Assert.That(spent.Synchronizations, Is.LessThanOrEqualTo(2), $"a full ring forces a read, but only once per {DeviceErrors.Ring} checks: {spent}");
        var bad = Ints([3, -7], 2);
        // The report comes from the read that a full ring forces, in a later op, or at the final synchronisation.
        Assert.That(() =>
            {
                Backend.RopeForward(input, bad, 2, 4, 10000f, output);
                for (int i = 0; i < DeviceErrors.Ring + 5; i++) Backend.RopeForward(input, good, 2, 4, 10000f, output);
                Backend.Synchronize();
            },
            Throws.ArgumentException.With.Message.Contains("RopeForward").And.Message.Contains("-7 at row 1"));
    }

    [Test]
    public void DebugSyncRaisesAtTheOpItself()
    {
        Kernels.DebugSync = true;
        try
        {
            var before = Kernels.Counters;
            ExpectReport(() => Backend.GatherRows(Zeros(4, 3), Ints([2, 8], 2), Zeros(2, 3)), "GatherRows", "8 at position 1");
            Assert.That((Kernels.Counters - before).Synchronizations, Is.GreaterThanOrEqualTo(1));
            Assert.DoesNotThrow(() => Backend.GatherRows(Zeros(4, 3), Ints([2, 3], 2), Zeros(2, 3)));
        }
        finally
        {
            Kernels.DebugSync = false;
        }
    }
}

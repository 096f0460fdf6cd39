using OR1.Native.Distributed;

namespace OR1.Tests.Distributed;

/// <summary>
/// MPI_THREAD_SERIALIZED's rule, enforced (<see cref="OneCallerGate"/>): while one thread is inside a collective, another
/// thread's call is refused naming both; after it leaves, any thread may call.
/// </summary>
public sealed class OneCallerGateTests
{
    [Test]
    public void ASecondCallerMeanwhileIsRefusedAndAfterwardsAdmitted()
    {
        var gate = new OneCallerGate(() => 1);
        using var inside = new ManualResetEventSlim();
        using var leave = new ManualResetEventSlim();
        var holder = new Thread(() =>
        {
            using (gate.Enter("all-reduce"))
            {
                inside.Set();
                leave.Wait();
            }
        });
        holder.Start();
        Assert.That(inside.Wait(TimeSpan.FromSeconds(30)), Is.True, "the holding thread entered");
        var e = Assert.Throws<CollectiveException>(() =>
        {
            using (gate.Enter("barrier")) { }
        });
        Assert.That(e!.Message, Does.Contain("rank 1").And.Contain("barrier").And.Contain("all-reduce").And.Contain("one thread's calls at a time"));
        leave.Set();
        holder.Join();
        Assert.DoesNotThrow(() =>
        {
            using (gate.Enter("barrier")) { }
        }, "the gate is free once the holder left");
    }
}

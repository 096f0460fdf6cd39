using OR1.Native;
using OR1.Native.Kernels;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

/// <summary>
/// <see cref="IBackend.CaptureGraph"/>: on the kernel backends (CUDA graphs; the emulator records and replays the same
/// launches) the captured work does not run at capture, a replay gives the bits of running it directly and reads its
/// buffers' current contents, and what a capture cannot hold (an allocation, an upload, a download, a synchronisation)
/// is refused with the driver's reason and leaves the backend usable. Backends without graphs return null.
/// </summary>
[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class DeviceGraphTests(BackendCase backendCase) : OpTestBase(backendCase)
{
    private bool HasGraphs => Backend is KernelBackend;

    /// <summary>x -> y = x W^T + x (through a copy), then y scaled: a GEMM, a copy, elementwise launches.</summary>
    private void Work(Tensor x, Tensor w, Tensor product, Tensor y)
    {
        Backend.MatMul(x, false, w, true, product);
        Backend.Copy(x, y);
        Backend.Add(product, y, y);
        Backend.Scale(y, 0.5f);
    }

    [Test]
    public void AReplayGivesTheDirectRunsBitsOnTheBuffersCurrentContents()
    {
        const int rows = 5, width = 12;
        var w = Floats(TestData.Normal(width * width, 2), width, width);
        var x = Floats(TestData.Normal(rows * width, 1), rows, width);
        var product = Zeros(rows, width);
        var y = Zeros(rows, width);
        var direct = Zeros(rows, width);

        var graph = Backend.CaptureGraph(() => Work(x, w, product, y));
        if (!HasGraphs)
        {
            Assert.That(graph, Is.Null, "a backend without graphs returns null");
            Assert.That(y.ToFloats(), Is.All.Zero, "and does not run the work");
            return;
        }
        using (graph)
        {
            Assert.That(graph!.Nodes, Is.GreaterThanOrEqualTo(4), "the GEMM, the copy and the elementwise launches were recorded");
            Assert.That(y.ToFloats(), Is.All.Zero, "a capture records the work without running it");
            graph.Replay();
            Work(x, w, product, direct);
            Assert.That(y.ToFloats(), Is.EqualTo(direct.ToFloats()), "the replay's bits are the direct run's");

            // New input in the same buffer: the replay reads it.
            Backend.Upload<float>(TestData.Normal(rows * width, 3), x);
            graph.Replay();
            graph.Replay(); // idempotent work: twice gives the same
            Work(x, w, product, direct);
            Assert.That(y.ToFloats(), Is.EqualTo(direct.ToFloats()), "a replay reads the buffers' contents at replay time");
        }
    }

    [Test]
    public void WhatACaptureCannotHoldIsRefusedAndTheBackendStaysUsable()
    {
        if (!HasGraphs) Assert.Ignore($"{Case.Name} has no graphs (CaptureGraph returns null, tested above)");
        var x = Floats(TestData.Normal(16, 1), 16);
        var host = new float[16];
        var refusals = new (string What, Action Body)[]
        {
            ("a download", () => Backend.Download<float>(x, host)),
            ("an upload", () => Backend.Upload<float>(host, x)),
            ("a synchronisation", () => Backend.Synchronize()),
            ("an allocation", () => Backend.Allocate(DType.Float32, new TensorShape(8)).Dispose()),
        };
        foreach (var (what, body) in refusals)
        {
            var e = Assert.Catch(() => Backend.CaptureGraph(() =>
            {
                Backend.Scale(x, 2f);
                body();
            }), what);
            Assert.That(e!.Message, Does.Contain("captur"), $"{what}: the message says the capture refused it");
            // The failed capture is closed: direct work runs again.
            Backend.Scale(x, 1f);
            Assert.That(x.ToFloats(), Is.EqualTo(TestData.Normal(16, 1)), $"after {what}: nothing recorded ran, and the backend works");
        }
    }

    /// <summary>A bad index that only a replay meets is still reported, naming the captured op, at the next synchronisation.</summary>
    [Test]
    public void AReplaysDeviceSideCheckReportsLikeADirectRun()
    {
        if (!HasGraphs) Assert.Ignore($"{Case.Name} has no graphs");
        var table = Floats(TestData.Normal(4 * 3, 5), 4, 3);
        var indices = Ints([0, 3, 1], 3);
        var rows = Zeros(3, 3);
        Backend.GatherRows(table, indices, rows); // the direct run first: the record exists, the op is warm
        using var graph = Backend.CaptureGraph(() => Backend.GatherRows(table, indices, rows))!;
        Assert.That(graph.IsCurrent, Is.True);
        graph.Replay();
        Assert.That(rows.ToFloats(), Is.Not.All.Zero, "a clean replay reads back without an error");
        Backend.Upload<int>([0, 7, 1], indices);
        graph.Replay();
        var e = Assert.Throws<ArgumentException>(() => rows.ToFloats());
        Assert.That(e!.Message, Does.Contain("GatherRows").And.Contain("'rowIndices' has 7 at position 1"));
        // The report is consumed; the graph replays cleanly on good data again.
        Backend.Upload<int>([2, 2, 2], indices);
        graph.Replay();
        Assert.That(rows.ToFloats().Take(3), Is.EqualTo(TestData.Normal(12, 5).Skip(6).Take(3)));
    }
}

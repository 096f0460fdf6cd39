using OR1.Native;
using OR1.Native.Cpu;
using OR1.Native.Emu;

namespace OR1.Tests.Ops;

/// <summary>
/// Tensors over 2 GiB (a 7B model's fp32 LM head or embedding table is 2.2 GB) upload and download
/// whole: a .NET byte span stops at 2 GiB, so the copy is split, and the pieces must land at the right
/// offsets. Checked on the Cpu backend and on the kernel backends' copy path (Emu), with a pattern
/// that differs on each side of every split.
/// </summary>
public class LargeTensorTests
{
    // 2 GiB + 12 bytes of floats: one split at 1 GiB, one at 2 GiB, and a 3-element tail.
    private const int Count = (1 << 29) + 3;

    private static float[]? s_pattern;

    private static float[] Pattern()
    {
        if (s_pattern is not null) return s_pattern;
        var data = new float[Count];
        for (int i = 0; i < data.Length; i++) data[i] = i % 1_000_003;
        return s_pattern = data;
    }

    private static void RoundTrip(IBackend backend)
    {
        var data = Pattern();
        using var tensor = backend.Allocate(DType.Float32, new TensorShape(Count));
        Assert.That(tensor.SizeInBytes, Is.GreaterThan(int.MaxValue));
        backend.Upload<float>(data, tensor);
        var back = new float[Count];
        backend.Download<float>(tensor, back);
        foreach (int i in new[] { 0, (1 << 28) - 1, 1 << 28, (1 << 29) - 1, 1 << 29, Count - 1 })
            Assert.That(back[i], Is.EqualTo(data[i]), $"element {i}");
        Assert.That(back.AsSpan().SequenceEqual(data), Is.True, "every element");
    }

    [Test]
    public void CpuRoundTripsOver2GiB()
    {
        using var backend = new CpuBackend();
        RoundTrip(backend);
    }

    [Test]
    public void KernelBackendRoundTripsOver2GiB()
    {
        EmuBackend backend;
        try
        {
            backend = new EmuBackend();
        }
        catch (BackendUnavailableException e)
        {
            if (Environment.GetEnvironmentVariable("OR1_REQUIRE_EMU") == "1") throw;
            Assert.Ignore($"Emu backend unavailable: {e.Message}");
            return;
        }
        using (backend) RoundTrip(backend);
    }
}

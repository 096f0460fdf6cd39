using OR1.Bench;

namespace OR1.Tests.Bench;

/// <summary>What the "% peak" column divides by.</summary>
public class HardwarePeakTests
{
    [Test]
    public void KnownGpusGetTheirStatedPeaks()
    {
        var h200 = HardwarePeak.StatedFor("Cuda (NVIDIA H200, sm_90, 132 SMs, 139.8 GiB)");
        Assert.That(h200, Is.Not.Null);
        Assert.That(h200!.BytesPerSecond, Is.EqualTo(4.8e12));
        Assert.That(h200.FlopsPerSecond, Is.EqualTo(989e12));
        Assert.That(h200.BandwidthBasis, Is.EqualTo("H200 stated 4.8 TB/s"));
        Assert.That(h200.FlopsBasis, Is.EqualTo("H200 stated 989 TFLOP/s"));
        Assert.That(HardwarePeak.StatedFor("Cuda (NVIDIA GeForce RTX 4090)"), Is.Null);
    }

    [Test]
    public void EnvironmentPeaksNeedBothAndMustBePositive()
    {
        Assert.That(HardwarePeak.Stated(null, "100"), Is.Null);
        Assert.That(HardwarePeak.Stated("2000", null), Is.Null);
        var peak = HardwarePeak.Stated("2039", "312");
        Assert.That(peak!.BytesPerSecond, Is.EqualTo(2.039e12));
        Assert.That(peak.FlopsPerSecond, Is.EqualTo(312e12));
        Assert.That(Assert.Throws<ArgumentException>(() => HardwarePeak.Stated("fast", "312"))!.Message, Does.Contain("OR1_PEAK_GBPS='fast'"));
        Assert.That(Assert.Throws<ArgumentException>(() => HardwarePeak.Stated("2039", "-1"))!.Message, Does.Contain("OR1_PEAK_TFLOPS='-1'"));
        Assert.Throws<ArgumentException>(() => HardwarePeak.Stated("NaN", "1"));
    }

    [Test]
    public void CpuPeaksAreMeasuredAndPlausible()
    {
        var peak = CpuPeakMeter.Measured;
        // Any machine this runs on copies faster than 1 GB/s and does more than 1 GFLOP/s of FMAs, and
        // nothing does 10 TB/s or 100 TFLOP/s on CPU cores.
        Assert.That(peak.BytesPerSecond, Is.InRange(1e9, 1e13));
        Assert.That(peak.FlopsPerSecond, Is.InRange(1e9, 1e14));
        Assert.That(peak.BandwidthBasis, Does.StartWith("measured copy "));
        Assert.That(peak.FlopsBasis, Does.StartWith("measured FMA "));
        Assert.That(HardwarePeak.For("cpu"), Is.SameAs(peak));
        Assert.That(HardwarePeak.For("emu"), Is.SameAs(peak), "the simulators run on the CPU");
    }

    [TestCase(4.8e12, "B/s", "4.8 TB/s")]
    [TestCase(2.58e10, "B/s", "25.8 GB/s")]
    [TestCase(9.89e14, "FLOP/s", "989 TFLOP/s")]
    [TestCase(5e6, "B/s", "5 MB/s")]
    public void Formats(double value, string unit, string expected) =>
        Assert.That(HardwarePeak.Format(value, unit), Is.EqualTo(expected));
}

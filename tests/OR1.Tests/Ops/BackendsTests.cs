using OR1.Native;

namespace OR1.Tests.Ops;

/// <summary>The backend-by-name factory the runner's --device and the benchmarks' --backends use.</summary>
public class BackendsTests
{
    [Test]
    public void CpuStartsByAnyCase()
    {
        using var lower = Backends.Create("cpu");
        using var upper = Backends.Create("CPU");
        Assert.That(lower.Kind, Is.EqualTo(BackendKind.Cpu));
        Assert.That(upper.Kind, Is.EqualTo(BackendKind.Cpu));
    }

    [Test]
    public void UnknownNameListsTheKnownOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => Backends.Create("tpu"));
        Assert.That(e!.Message, Does.Contain("'tpu'"));
        foreach (var name in Backends.Names) Assert.That(e.Message, Does.Contain(name));
    }

    [Test]
    public void EveryNameEitherStartsOrSaysWhyNot()
    {
        var kinds = new Dictionary<string, BackendKind>
        {
            ["cpu"] = BackendKind.Cpu, ["cuda"] = BackendKind.Cuda, ["emu"] = BackendKind.Emu,
            ["ilgpu-cuda"] = BackendKind.Ilgpu, ["ilgpu-cpu"] = BackendKind.Ilgpu,
        };
        Assert.That(Backends.Names, Is.EquivalentTo(kinds.Keys));
        foreach (var name in Backends.Names)
        {
            try
            {
                using var backend = Backends.Create(name);
                Assert.That(backend.Kind, Is.EqualTo(kinds[name]), name);
                Assert.That(Backends.CanStart(name), Is.True, name);
            }
            catch (BackendUnavailableException e)
            {
                Assert.That(e.Backend, Is.EqualTo(kinds[name]), name);
                Assert.That(Backends.CanStart(name), Is.False, name);
            }
        }
    }
}

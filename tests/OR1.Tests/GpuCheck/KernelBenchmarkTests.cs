using System.Diagnostics;
using OR1.Native;
using OR1.Native.Kernels;
using OR1.Tests.Support;

namespace OR1.Tests.GpuCheck;

/// <summary>
/// The GPU check's kernel phase runs every case of bench/compare/gpu_cases.json on the emulator, shrunk 128-fold, so
/// a lent GPU's few minutes never meet a case our side cannot run (a dtype the op refuses, a shape the launcher
/// rejects): every case gives a time and a rate under its counting, none an error, and the keys are the file's.
/// </summary>
public sealed class KernelBenchmarkTests
{
    [Test]
    public void EveryCaseOfTheCasesFileRunsOnTheEmulator()
    {
        using var backend = EmuOrIgnore.Open(() => (KernelBackend)Backends.Create("emu"));
        var cases = KernelCaseSpec.Load(Path.Combine(RepositoryPaths.Root, "bench", "compare", "gpu_cases.json")).Select(c => c.Shrunk(128)).ToArray();
        Assert.That(cases.Select(c => c.Key), Is.Unique);
        double Time(Action call)
        {
            var watch = Stopwatch.StartNew();
            call();
            backend.Synchronize();
            return watch.Elapsed.TotalMilliseconds;
        }
        var records = KernelBenchmark.Run(backend, cases, Time, repeats: 1, TestContext.Out.WriteLine);

        Assert.That(records.Where(r => r.Error is not null).Select(r => $"{r.Key}: {r.Error}"), Is.Empty);
        Assert.That(records.Where(r => r.Skipped is not null).Select(r => r.Key), Is.Empty, "an op the check does not know");
        Assert.That(records.Select(r => r.Key).Where(k => !k.StartsWith("ours/")), Is.EqualTo(cases.Select(c => c.Key)));
        Assert.That(records.Select(r => r.Key).Where(k => k.StartsWith("ours/")), Is.Not.Empty, "our extra rows (fp32 attention, top-k)");
        foreach (var r in records)
        {
            Assert.That(r.Ms, Is.GreaterThan(0), r.Key);
            Assert.That((r.Gbps ?? 0) > 0 || (r.Tflops ?? 0) > 0, Is.True, $"{r.Key}: no rate");
            Assert.That(r.Counting, Is.Not.Empty, $"{r.Key}: the counting behind its rate");
            Assert.That(r.Counters!["builtin_gemms"], Is.EqualTo(r.Counters["gemms"]), "every GEMM of the emulator is builtin");
        }
    }

    [Test]
    public void ShrinkingKeepsHeadGeometryAndDividesSizes()
    {
        var cases = KernelCaseSpec.Load(Path.Combine(RepositoryPaths.Root, "bench", "compare", "gpu_cases.json"));
        var attention = cases.First(c => c.Op == "attention_forward").Shrunk(128);
        Assert.That(attention.Int("head_dim"), Is.EqualTo(128));
        Assert.That(attention.Int("heads"), Is.EqualTo(12));
        Assert.That(attention.Int("length"), Is.EqualTo(cases.First(c => c.Op == "attention_forward").Int("length") / 128));
        var adam = cases.First(c => c.Op == "adamw").Shrunk(128);
        Assert.That(adam.Shapes("parameters")[0], Is.EqualTo(new[] { 12, 12 }));
        Assert.Throws<FileNotFoundException>(() => KernelCaseSpec.Load("/nonexistent/gpu_cases.json"));
    }
}

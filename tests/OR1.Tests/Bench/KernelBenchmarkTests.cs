using System.Reflection;
using BenchmarkDotNet.Attributes;
using OR1.Bench;
using OR1.Bench.Kernels;
using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Bench;

/// <summary>
/// The per-family kernel benchmarks: one class per kernels/*.cu family, every method runs on the Cpu
/// backend and on the CUDA kernels' host emulator at the tiny odd shape, and every method reports the
/// bytes or flops its columns divide by, with the launch count that matches (many launches for short
/// memory-bound kernels, one for the long compute-bound ones).
/// </summary>
public class KernelBenchmarkTests
{
    private static readonly Type[] s_families = typeof(KernelBenchmark).Assembly.GetTypes()
        .Where(t => t.IsSubclassOf(typeof(KernelBenchmark)) && !t.IsAbstract).OrderBy(t => t.Name).ToArray();

    private static IEnumerable<MethodInfo> BenchmarkMethods(Type family) =>
        family.GetMethods().Where(m => m.GetCustomAttribute<BenchmarkAttribute>() is not null);

    private static KernelBenchmark Tiny(Type family, string backend, DType storage = DType.Float32)
    {
        var benchmark = (KernelBenchmark)Activator.CreateInstance(family)!;
        benchmark.Case = new KernelCase(backend, BenchScale.Simulator, ModelShape.OddTiny, RolloutShape.OddTiny, storage);
        return benchmark;
    }

    /// <summary>kernels/*.cu files that hold no op family, and why.</summary>
    private static readonly Dictionary<string, string> s_notFamilies = new()
    {
        ["tensorcore_check"] = "probes of the warp matrix instructions, tested by Emu/TensorCoreInstructionTests, never benchmarked",
    };

    /// <summary>The family a kernels/*.cu file belongs to: "attention_simt" (the CUDA-core variant) is the attention family.</summary>
    private static string FamilyOf(string file) => file.Split('_')[0];

    [Test]
    public void EveryKernelFamilyHasABenchmarkClass()
    {
        // The build copies kernels/*.cu next to the assemblies (the Cuda backend's NVRTC fallback reads them there).
        var kernels = Path.Combine(AppContext.BaseDirectory, "kernels", "src");
        Assert.That(Directory.Exists(kernels), Is.True, $"{kernels} is missing: the build did not copy kernels/*.cu");
        var files = Directory.GetFiles(kernels, "*.cu").Select(f => Path.GetFileNameWithoutExtension(f)!).ToArray();
        Assert.That(files, Has.Length.GreaterThanOrEqualTo(12));
        foreach (var file in files.Where(f => !s_notFamilies.ContainsKey(f)))
            Assert.That(s_families.Select(t => t.Name.ToLowerInvariant()), Does.Contain(FamilyOf(file) + "benchmarks"),
                $"kernels/{file}.cu has no {FamilyOf(file)}Benchmarks class in bench/OR1.Bench/Kernels");
        foreach (var (file, why) in s_notFamilies)
            Assert.That(files, Does.Contain(file), $"kernels/{file}.cu is listed as no family ({why}) but does not exist");
    }

    [TestCase("cpu")]
    [TestCase("emu")]
    public void EveryMethodRunsAtTheTinyShape(string backend)
    {
        foreach (var family in s_families)
        {
            var benchmark = Tiny(family, backend);
            try
            {
                benchmark.Setup();
                foreach (var method in BenchmarkMethods(family))
                    Assert.DoesNotThrow(() => method.Invoke(benchmark, null), $"{family.Name}.{method.Name} on {backend}");
            }
            finally
            {
                benchmark.Dispose();
            }
        }
    }

    [Test]
    public void AttentionRunsInBf16StorageWhereTheBackendStoresIt()
    {
        // The bf16 cases run attention.cu's tensor-core kernels at the real shapes (head dims 64 and 128); the tiny odd
        // shape the emulator runs (head dim 22, not a multiple of 8) takes the bf16 CUDA-core path: the wiring is tested.
        using (EmuOrIgnore.Open(() => Backends.Create("emu"))) { }
        var benchmark = Tiny(typeof(AttentionBenchmarks), "emu", DType.BFloat16);
        try
        {
            benchmark.Setup();
            foreach (var method in BenchmarkMethods(typeof(AttentionBenchmarks)))
                Assert.DoesNotThrow(() => method.Invoke(benchmark, null), $"AttentionBenchmarks.{method.Name} on emu/bf16");
            Assert.That(benchmark.BytesMoved(nameof(AttentionBenchmarks.Decode)) * 2,
                Is.EqualTo(Tiny(typeof(AttentionBenchmarks), "emu").BytesMoved(nameof(AttentionBenchmarks.Decode))), "bf16 decode moves half the bytes");
        }
        finally
        {
            benchmark.Dispose();
        }
        try
        {
            BenchSelection.BackendFilter = ["cpu", "emu"];
            var cases = new AttentionBenchmarks().Cases().Select(c => c.ToString()).ToArray();
            Assert.That(cases.Any(c => c.StartsWith("emu/") && c.EndsWith("/bf16")), Is.True, $"emu stores bf16, so a bf16 case is listed; cases: {string.Join(", ", cases)}");
            Assert.That(cases.Where(c => c.StartsWith("cpu/")), Has.None.EndsWith("/bf16"), "the Cpu backend stores fp32 only");
        }
        finally
        {
            BenchSelection.BackendFilter = null;
        }
    }

    [Test]
    public void EveryMethodReportsWorkAndTheMatchingLaunchCount()
    {
        foreach (var family in s_families)
        {
            var benchmark = Tiny(family, "cpu");
            foreach (var method in BenchmarkMethods(family))
            {
                string name = $"{family.Name}.{method.Name}";
                long bytes = benchmark.BytesMoved(method.Name);
                double flops = benchmark.Flops(method.Name);
                Assert.That(bytes > 0 || flops > 0, Is.True, $"{name} reports neither bytes nor flops, so its GB/s, GFLOP/s and % peak would be blank");
                int launches = method.GetCustomAttribute<BenchmarkAttribute>()!.OperationsPerInvoke;
                if (flops > 0) Assert.That(launches, Is.EqualTo(1), $"{name} is compute-bound: one launch per operation");
                else Assert.That(launches, Is.EqualTo(KernelBenchmark.Launches), $"{name} is a short memory-bound kernel: {KernelBenchmark.Launches} launches per synchronisation");
            }
        }
    }

    [Test]
    public void CasesCoverEveryRealShapeOnTheCpuAndOnlyTheTinyOneOnSimulators()
    {
        try
        {
            BenchSelection.BackendFilter = ["cpu", "ilgpu-cpu"];
            var cases = new GemmBenchmarks().Cases().ToArray();
            Assert.That(cases.Where(c => c.Backend == "cpu").Select(c => c.ModelShape), Is.EqualTo(ModelShape.Real));
            Assert.That(cases.Where(c => c.Backend == "ilgpu-cpu").Select(c => c.ModelShape), Is.EqualTo(new[] { ModelShape.OddTiny }));
            Assert.That(cases.Select(c => c.ToString()), Does.Contain("cpu/Qwen2.5-7B"));
            var rollouts = new GrpoBenchmarks().Cases().ToArray();
            Assert.That(rollouts.Where(c => c.Backend == "cpu").Select(c => c.RolloutShape), Is.EqualTo(RolloutShape.Real));

            BenchSelection.ShapeFilter = ["7b"];
            Assert.That(new GemmBenchmarks().Cases().Select(c => c.ToString()), Is.EqualTo(new[] { "cpu/Qwen2.5-7B" }));
            Assert.That(new GrpoBenchmarks().Cases().Select(c => c.ToString()), Is.EqualTo(new[] { "cpu/OR1-7B stage 1", "cpu/OR1-7B stage 2" }));
        }
        finally
        {
            BenchSelection.BackendFilter = null;
            BenchSelection.ShapeFilter = null;
        }
    }

    [Test]
    public void UnknownBackendInTheFilterIsNamed()
    {
        try
        {
            var rest = BenchSelection.Parse(["--filter", "*Rope*", "--backends", "cpu,tpu"]);
            Assert.That(rest, Is.EqualTo(new[] { "--filter", "*Rope*" }));
            var e = Assert.Throws<ArgumentException>(() => BenchSelection.AvailableBackends());
            Assert.That(e!.Message, Does.Contain("--backends").And.Contain("'tpu'"));
            Assert.Throws<ArgumentException>(() => BenchSelection.Parse(["--shapes"]));
        }
        finally
        {
            BenchSelection.BackendFilter = null;
            BenchSelection.ShapeFilter = null;
        }
    }

    [Test]
    public void ScaledShapesKeepWidthsAndFitTheTrafficBudget()
    {
        var shape = ModelShape.Qwen25_7B;
        var layer = shape.LayerWeightsWithin(BenchScale.Cpu.TrafficBytes, 28);
        Assert.That(layer.Select(w => w.Columns), Is.EqualTo(shape.LayerWeights.Select(w => w.Columns)));
        Assert.That(layer.Sum(w => (long)w.Rows * w.Columns) * 28, Is.LessThanOrEqualTo(BenchScale.Cpu.TrafficBytes));
        Assert.That(layer.Sum(w => (long)w.Rows * w.Columns) * 28, Is.GreaterThan(BenchScale.Cpu.TrafficBytes * 0.9));
        // A whole 7B layer's gradients (233 M floats) fit the GPU budget of one launch? No: 0.93 GB < 1 GiB, so they stay whole.
        Assert.That(shape.LayerWeightsWithin(BenchScale.Gpu.TrafficBytes, 4), Is.EqualTo(shape.LayerWeights));
        Assert.That(BenchScale.Cpu.RowsFor(0), Is.EqualTo(1 << 24));
        Assert.That(BenchScale.Simulator.RowsFor(1L << 40), Is.EqualTo(1));
    }
}

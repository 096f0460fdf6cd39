using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using OR1.Native.Emu;
using OR1.Tests.Support;

namespace OR1.Tests.Kernels;

/// <summary>
/// Checks on the machine code of every kernels/*.cu (what ships as PTX, which the driver compiles with the same ptxas)
/// for sm_80 and sm_90, so that what only a GPU would show fails in CI: nothing spills to local memory; every entry
/// declares launch bounds and fits the registers they leave; static shared memory fits the 48 KB that needs no opt-in;
/// the bf16 attention forward and backward run on tensor cores (HMMA); the memory-bound kernels load in 16-byte accesses
/// (LDG.E.128); the emulator enforces the bounds the compiled code has. The table of every entry (registers, shared
/// memory, spills, HMMA, LDG.128, bounds) is in the test output.
/// Dynamic shared memory is not checked here: the launchers compute it, and the emulator refuses a launch above the
/// kernel's opt-in or the device's maximum (EmuHardwareRulesTests); static + dynamic together is not checked.
/// Without nvcc the fixture is ignored, unless OR1_REQUIRE_NVCC=1 (CI), which fails it instead.
/// Run: dotnet test tests/OR1.Tests -c Release --filter TestCategory=CompiledCode
/// </summary>
[TestFixture]
[Category("CompiledCode")]
public sealed class CompiledCodeTests
{
    /// <summary>
    /// Kernels that must do their matrix products on tensor cores: the bf16 attention forward and the backward's dQ and
    /// dK/dV kernels (attention.cu exports them per head dim: attention_forward_bf16_d64, ...). Not the Di pre-pass
    /// (attention_backward_dot: a row-wise dot product), not decode (one query row per warp), not attention_simt.cu
    /// (the CUDA-core path for fp32 storage and head dims that are not a multiple of 8). Each pattern must match at least
    /// one compiled entry, so a rename cannot make the check pass by matching nothing.
    /// </summary>
    private static readonly Regex[] TensorCoreKernels =
    [
        new(@"^attention_forward_bf16"),
        new(@"^attention_backward_(?:dq|dkv|dk|dv)_bf16"),
    ];

    /// <summary>
    /// The memory-bound kernels (issue 19) and the decode kernels, which must move their data in 16-byte accesses: at least one LDG.E.128 (or
    /// LDG.E.128.CONSTANT) in their SASS. fill is not listed (it only stores), nor sumsq_final (one block adding a few
    /// hundred doubles). Each pattern must match at least one compiled entry, as for <see cref="TensorCoreKernels"/>.
    /// </summary>
    private static readonly Regex[] MemoryBoundKernels =
    [
        new(@"^rmsnorm_(?:forward|backward_dx|backward_dw)_(?:f32|bf16)$"),
        new(@"^rope_apply_(?:f32|bf16)$"),
        new(@"^swiglu_(?:forward|backward)_(?:f32|bf16)$"),
        new(@"^embedding_(?:forward|backward)_(?:f32|bf16)$"),
        new(@"^adamw_step$"),
        new(@"^sumsq_multi$"),
        new(@"^column_partials_reduce$"),
        new(@"^(?:add|scale|add_bias|bias_backward)_(?:f32|bf16)$"),
        new(@"^convert_(?:f32_bf16|bf16_f32)$"),
        new(@"^(?:gather|scatter)_rows$"),
        new(@"^logprob_fold$"),
        new(@"^logprob_grad_(?:f32|bf16)$"),
        // decode's split kernels on their vector path read whole cache rows 16 bytes at a time (the scalar path,
        // attention_decode_split_scalar_*, takes head dims that are not a multiple of 8 and is not held to it)
        new(@"^attention_decode_split_g\d+_(?:f32|bf16)$"),
        // sampling reads each row's logits 16 bytes at a time in every pass over the vocabulary
        new(@"^sample_rows_(?:f32|bf16)$"),
    ];

    private static readonly int[] Architectures = [80, 90];

    /// <summary>Static __shared__ arrays cannot use the opt-in above 48 KB (only dynamic shared memory can).</summary>
    private const int StaticSharedLimit = 48 * 1024;

    private const int MaxThreadsPerBlock = 1024;

    private string _work = "";
    private List<KernelCompilation> _compilations = [];
    private List<CompiledKernel> _kernels = [];
    private string _table = "";

    [OneTimeSetUp]
    public async Task CompileEveryKernelSource()
    {
        var tools = NvccToolchain.Find(out string missing);
        if (tools is null)
        {
            if (Environment.GetEnvironmentVariable("OR1_REQUIRE_NVCC") == "1") Assert.Fail($"OR1_REQUIRE_NVCC=1 but {missing}");
            Assert.Ignore($"the compiled-code checks need the CUDA toolchain: {missing}");
        }
        var sources = Directory.EnumerateFiles(Path.Combine(RepositoryPaths.Root, "kernels"), "*.cu").Order(StringComparer.Ordinal).ToList();
        Assert.That(sources, Is.Not.Empty, "kernels/*.cu");
        _work = Path.Combine(Path.GetTempPath(), $"or1-compiled-code-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_work);

        // Every (file, architecture) is one nvcc process: as many at once as there are cores (2 in CI), longest files first
        // (the attention kernels take most of the time) so that the short ones fill in around them.
        var jobs = sources.OrderByDescending(s => new FileInfo(s).Length).SelectMany(s => Architectures.Select(a => (Source: s, Arch: a))).ToList();
        var results = new KernelCompilation[jobs.Count];
        var clock = Stopwatch.StartNew();
        await Parallel.ForEachAsync(Enumerable.Range(0, jobs.Count), new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
            async (i, _) => results[i] = await KernelCompilation.CompileAsync(tools!, jobs[i].Source, jobs[i].Arch, _work));
        clock.Stop();

        _compilations = [.. results.OrderBy(c => c.File, StringComparer.Ordinal).ThenBy(c => c.Arch)];
        _kernels = [.. _compilations.SelectMany(c => c.Kernels).OrderBy(k => k.File, StringComparer.Ordinal).ThenBy(k => k.Name, StringComparer.Ordinal).ThenBy(k => k.Arch)];
        _table = Table(clock.Elapsed, Environment.ProcessorCount);
        // Progress reaches the console while the tests run, so a CI log shows the table even when every check passes.
        TestContext.Progress.WriteLine(_table);
    }

    [OneTimeTearDown]
    public void RemoveWorkFolder()
    {
        if (_work.Length > 0 && Directory.Exists(_work)) Directory.Delete(_work, recursive: true);
    }

    private string Table(TimeSpan elapsed, int cores)
    {
        var text = new StringBuilder();
        text.AppendLine($"Compiled code of kernels/*.cu: {_compilations.Count(c => c.Succeeded)} of {_compilations.Count} (file, arch) compilations, " +
                        $"{_kernels.Count} entries, {elapsed.TotalSeconds:0.0} s on {cores} cores " +
                        $"(slowest: {string.Join(", ", _compilations.OrderByDescending(c => c.Elapsed).Take(3).Select(c => $"{c.File} sm_{c.Arch} {c.Elapsed.TotalSeconds:0.0} s"))})");
        text.AppendLine();
        text.AppendLine("| file | kernel | arch | registers | register budget | launch bounds | static smem bytes | stack bytes | spill bytes (st/ld) | HMMA | LDG.128 |");
        text.AppendLine("| --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
        foreach (var k in _kernels)
            text.AppendLine($"| {k.File} | {k.Name} | sm_{k.Arch} | {k.Registers} | {k.RegisterBudget} | {k.LaunchBounds} | {k.StaticSharedBytes} | " +
                            $"{k.StackFrameBytes} | {k.SpillStoreBytes}/{k.SpillLoadBytes} | {k.Hmma} | {k.Ldg128} |");
        return text.ToString();
    }

    private static string List(IEnumerable<string> lines) => string.Join(Environment.NewLine, lines.Select(l => "  " + l));

    /// <summary>The table, in this test's output for a reviewer; it passes whenever the files compiled.</summary>
    [Test]
    public void ResourceTable()
    {
        TestContext.Out.WriteLine(_table);
        Assert.That(_kernels, Is.Not.Empty);
    }

    [Test]
    public void EveryKernelSourceCompilesForSm80AndSm90()
    {
        var failed = _compilations.Where(c => !c.Succeeded).ToList();
        Assert.That(failed, Is.Empty, () => "nvcc failed:" + Environment.NewLine +
            string.Join(Environment.NewLine, failed.Select(c => $"--- {c.File} sm_{c.Arch}{Environment.NewLine}{Tail(c.Log, 3000)}")));
    }

    private static string Tail(string text, int characters) => text.Length <= characters ? text : "..." + text[^characters..];

    [Test]
    public void NothingSpillsToLocalMemory()
    {
        var spills = _kernels.Where(k => k.SpillStoreBytes + k.SpillLoadBytes > 0)
            .Select(k => $"{k.File} {k.Name} sm_{k.Arch}: {k.SpillStoreBytes} bytes spill stores, {k.SpillLoadBytes} bytes spill loads " +
                         $"({k.Registers} registers, launch bounds {k.LaunchBounds})")
            .Concat(_compilations.SelectMany(c => c.SpillingCallees.Select(s => $"{c.File} sm_{c.Arch} (called function) {s}")))
            .ToList();
        Assert.That(spills, Is.Empty, () => "ptxas spilled registers to local memory (slow in a hot loop; give the kernel fewer live values, or bounds " +
                                            "that leave more registers):" + Environment.NewLine + List(spills));
    }

    [Test]
    public void EveryEntryDeclaresLaunchBounds()
    {
        var unbounded = _kernels.Where(k => k.MaxThreads is null).Select(k => $"{k.File} {k.Name} sm_{k.Arch}").ToList();
        Assert.That(unbounded, Is.Empty, () => "entries without __launch_bounds__ (ptxas then assumes 1024 threads and the emulator cannot refuse a launch " +
                                               "above what the kernel was written for; declare them with OR1_BOUNDED_KERNEL / OR1_BOUNDED_STORAGE_KERNELS " +
                                               "in kernels/common.cuh, the largest block the launcher uses):" + Environment.NewLine + List(unbounded));
        var outside = _kernels.Where(k => k.MaxThreads is < 1 or > MaxThreadsPerBlock).Select(k => $"{k.Name}: {k.LaunchBounds}").ToList();
        Assert.That(outside, Is.Empty, () => "launch bounds outside 1..1024 threads:" + Environment.NewLine + List(outside));
    }

    [Test]
    public void RegistersStayWithinTheLaunchBoundsBudget()
    {
        var over = _kernels.Where(k => k.Registers > k.RegisterBudget)
            .Select(k => $"{k.File} {k.Name} sm_{k.Arch}: {k.Registers} registers, budget {k.RegisterBudget} for launch bounds {k.LaunchBounds}").ToList();
        Assert.That(over, Is.Empty, () => "more registers than 65,536 / (threads x blocks) allows (at most 255):" + Environment.NewLine + List(over));
    }

    [Test]
    public void StaticSharedMemoryFitsWithoutTheOptIn()
    {
        var over = _kernels.Where(k => k.StaticSharedBytes > StaticSharedLimit)
            .Select(k => $"{k.File} {k.Name} sm_{k.Arch}: {k.StaticSharedBytes} bytes of static __shared__").ToList();
        Assert.That(over, Is.Empty, () => $"static shared memory above {StaticSharedLimit} bytes per block, which no opt-in raises (move tiles to " +
                                          "dynamic shared memory, OR1_DYNAMIC_SHARED, and raise the kernel's attribute in the launcher):" + Environment.NewLine + List(over));
    }

    /// <summary>
    /// Issue 18 §2: the bf16 attention forward and backward use tensor cores. Strict; the attention rewrite (kernels/attention.cu)
    /// is in progress, so while it is, this failure lists exactly the kernels that still lack HMMA.
    /// </summary>
    [Test]
    public void Bf16AttentionForwardAndBackwardUseTensorCores()
    {
        var unmatched = TensorCoreKernels.Where(p => !_kernels.Any(k => p.IsMatch(k.Name))).Select(p => p.ToString()).ToList();
        var without = _kernels.Where(k => TensorCoreKernels.Any(p => p.IsMatch(k.Name)) && k.Hmma == 0)
            .Select(k => $"{k.File} {k.Name} sm_{k.Arch}").ToList();
        Assert.Multiple(() =>
        {
            Assert.That(unmatched, Is.Empty, () => "no compiled entry matches these expected tensor-core kernel patterns (CompiledCodeTests.TensorCoreKernels; " +
                                                   "renamed, or attention.cu missing?):" + Environment.NewLine + List(unmatched));
            Assert.That(without, Is.Empty, () => "bf16 attention kernels without a tensor-core instruction (HMMA) in their SASS (issue 18 §2; the attention " +
                                                 "rewrite is in progress, and the lead decides when this check becomes a gate):" + Environment.NewLine + List(without));
        });
    }

    /// <summary>
    /// Issue 19: the memory-bound kernels load in 16-byte accesses (kernels/vector_io.cuh). Only sm_90 is required: the
    /// same source gives sm_80 the same loads, and the table shows both.
    /// </summary>
    [Test]
    public void MemoryBoundKernelsLoadIn16ByteAccesses()
    {
        var unmatched = MemoryBoundKernels.Where(p => !_kernels.Any(k => p.IsMatch(k.Name))).Select(p => p.ToString()).ToList();
        var without = _kernels.Where(k => k.Arch == 90 && MemoryBoundKernels.Any(p => p.IsMatch(k.Name)) && k.Ldg128 == 0)
            .Select(k => $"{k.File} {k.Name} sm_{k.Arch}").ToList();
        Assert.Multiple(() =>
        {
            Assert.That(unmatched, Is.Empty, () => "no compiled entry matches these memory-bound kernel patterns (CompiledCodeTests.MemoryBoundKernels; " +
                                                   "renamed or removed?):" + Environment.NewLine + List(unmatched));
            Assert.That(without, Is.Empty, () => "memory-bound kernels without a 16-byte global load (LDG.E.128) in their sm_90 SASS: move the data in " +
                                                 "packs (kernels/vector_io.cuh), with scalar ends for views at odd offsets:" + Environment.NewLine + List(without));
        });
    }

    /// <summary>
    /// The emulator refuses a launch above a kernel's bounds only if it knows them: a bare __launch_bounds__ (instead of
    /// OR1_BOUNDED_KERNEL) reaches ptxas but not the emulator, so a launcher exceeding it would pass CI and fail on a GPU.
    /// </summary>
    [Test]
    public unsafe void TheEmulatorEnforcesTheCompiledLaunchBounds()
    {
        var api = EmuOrIgnore.Open(EmuLibrary.Get);
        if (!NativeLibrary.TryGetExport(api.Handle, "or1_emu_kernel_max_threads", out nint export))
            Assert.Fail($"{api.Path} does not export or1_emu_kernel_max_threads; rebuild it from this version's kernels/");
        var maxThreads = (delegate* unmanaged<nint, int>)export;
        var mismatches = new List<string>();
        foreach (var kernel in _kernels.Where(k => k.Arch == Architectures[^1]))
        {
            byte[] name = Encoding.UTF8.GetBytes(kernel.Name + "\0");
            nint handle;
            fixed (byte* p = name) handle = api.FindKernel(p);
            int compiled = kernel.MaxThreads ?? MaxThreadsPerBlock;
            if (handle == 0) mismatches.Add($"{kernel.File} {kernel.Name}: not in {api.Path}");
            else if (maxThreads(handle) != compiled)
                mismatches.Add($"{kernel.File} {kernel.Name}: compiled launch bounds {kernel.LaunchBounds}, the emulator allows {maxThreads(handle)} threads");
        }
        Assert.That(mismatches, Is.Empty, () => "the emulator and the compiled code disagree on the most threads per block (declare launch bounds " +
                                                "with OR1_BOUNDED_KERNEL / OR1_BOUNDED_STORAGE_KERNELS, not a bare __launch_bounds__):" + Environment.NewLine + List(mismatches));
    }
}

using OR1.Native;
using OR1.Native.Cpu;
using OR1.Native.Emu;
using OR1.Native.Kernels;
using OR1.Tests.Support;

namespace OR1.Tests.Emu;

/// <summary>
/// The emulator refuses what a GPU refuses, so kernels and launchers written without a GPU fail in CI
/// instead of on the first day they meet one: dynamic shared memory above 48 KB without the kernel's
/// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES (and an attribute above the device's opt-in maximum,
/// sm_80 or sm_90), a block above the kernel's __launch_bounds__, warp collectives whose mask names lanes
/// that have exited or do not exist, and 16-byte vector accesses off the 16-byte grid. The
/// self-test kernels are in kernels/emu/selftest.cu; the CTest executable checks the same rules.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed unsafe class EmuHardwareRulesTests
{
    private const string DynamicShared = "emu_selftest_dynamic_shared";
    private const string FullMask = "emu_selftest_full_mask";
    private const string LiveMask = "emu_selftest_live_mask";
    private const string Bounded = "emu_selftest_bounded"; // __launch_bounds__(64)
    private const string VectorCopy = "emu_selftest_vector_copy";

    private EmuLibrary.Api _api = null!;
    private EmuRuntime _runtime = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _api = EmuOrIgnore.Open(EmuLibrary.Get);
        _runtime = new EmuRuntime();
    }

    [OneTimeTearDown]
    public void Dispose() => _runtime?.Dispose();

    /// <summary>The attribute and the architecture are process-wide: every test leaves the defaults behind.</summary>
    [TearDown]
    public void RestoreDefaults()
    {
        if (_api is null) return;
        _runtime.SetDeviceArchitecture(90);
        _api.SetSchedule(0);
        ResetAttribute(DynamicShared);
    }

    /// <summary>cuFuncSetAttribute back to the 48 KB a kernel has before any opt-in (allowed on a GPU too).</summary>
    private void ResetAttribute(string kernel) =>
        Assert.That(_api.SetMaxDynamicShared(_runtime.Find(kernel), SharedMemoryLimits.DefaultDynamicBytes), Is.Zero, () => EmuLibrary.LastError(_api));

    private int Attribute(string kernel) => _api.GetMaxDynamicShared(_runtime.Find(kernel));

    /// <summary>Reverses n floats through dynamic shared memory of exactly n * 4 bytes.</summary>
    private float[] ReverseThroughShared(int n)
    {
        var x = Enumerable.Range(0, n).Select(i => (float)i).ToArray();
        var output = new float[n];
        fixed (float* px = x)
        fixed (float* po = output)
        {
            var args = new KernelArgs();
            _runtime.Launch(DynamicShared, 1, 64, n * sizeof(float), ref args.Ptr((nint)px).Ptr((nint)po).Int(n));
        }
        return output;
    }

    // ---------------------------------------------------------------- dynamic shared memory

    [Test]
    public void A48KbPlus16ByteLaunchWithoutTheAttributeFailsAndRunsOnceItIsSet()
    {
        const int bytes = 48 * 1024 + 16;
        ResetAttribute(DynamicShared);
        var refused = Assert.Throws<KernelException>(() => ReverseThroughShared(bytes / sizeof(float)))!;
        Assert.That(refused.Kernel, Is.EqualTo(DynamicShared));
        Assert.That(refused.Message, Does.Contain(DynamicShared).And.Contain("49168 bytes").And.Contain("CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES")
            .And.Contain("CUDA_ERROR_INVALID_VALUE"));
        // The Cuda runtime reports the same failure in the same words (SharedMemoryLimits).
        Assert.That(refused.Message, Does.EndWith($"{DynamicShared}: {SharedMemoryLimits.LaunchAboveLimit(bytes, SharedMemoryLimits.DefaultDynamicBytes)}"));

        _runtime.EnsureDynamicSharedMemory(DynamicShared, bytes);
        Assert.That(Attribute(DynamicShared), Is.EqualTo(bytes));
        var output = ReverseThroughShared(bytes / sizeof(float));
        Assert.That(output, Is.EqualTo(Enumerable.Range(0, bytes / sizeof(float)).Reverse().Select(i => (float)i).ToArray()));

        var above = Assert.Throws<KernelException>(() => ReverseThroughShared(bytes / sizeof(float) + 1))!;
        Assert.That(above.Message, Does.EndWith(SharedMemoryLimits.LaunchAboveLimit(bytes + 4, bytes)), "above the attribute that was set");
    }

    [Test]
    public void ExactlyTheDefault48KbNeedsNoAttribute()
    {
        ResetAttribute(DynamicShared);
        var output = ReverseThroughShared(SharedMemoryLimits.DefaultDynamicBytes / sizeof(float));
        Assert.That(output[0], Is.EqualTo(SharedMemoryLimits.DefaultDynamicBytes / sizeof(float) - 1));
    }

    [TestCase(80, 166_912)]
    [TestCase(90, 232_448)]
    public void AnAttributeAboveTheDevicesOptInMaximumIsRefused(int arch, int maximum)
    {
        _runtime.SetDeviceArchitecture(arch);
        Assert.That(_runtime.DeviceArchitecture, Is.EqualTo(arch));
        Assert.That(_runtime.MaxDynamicSharedMemory, Is.EqualTo(maximum).And.EqualTo(SharedMemoryLimits.OptInMaximum(arch)));
        ResetAttribute(DynamicShared);
        var e = Assert.Throws<KernelException>(() => _runtime.EnsureDynamicSharedMemory(DynamicShared, maximum + 1))!;
        Assert.That(e.Message, Does.EndWith($"{DynamicShared}: {SharedMemoryLimits.AttributeAboveDevice(maximum + 1, maximum, arch)}"));
        Assert.That(e.Message, Does.Contain($"sm_{arch}").And.Contain(maximum.ToString()));
        Assert.That(Attribute(DynamicShared), Is.EqualTo(SharedMemoryLimits.DefaultDynamicBytes), "a refused attribute changes nothing");

        _runtime.EnsureDynamicSharedMemory(DynamicShared, maximum);
        Assert.That(Attribute(DynamicShared), Is.EqualTo(maximum));
        var output = ReverseThroughShared(maximum / sizeof(float));
        Assert.That(output[^1], Is.Zero, "the device's whole opt-in maximum is usable");
    }

    [Test]
    public void ALaunchAboveTheDeviceIsRefusedEvenWithTheAttribute()
    {
        _runtime.EnsureDynamicSharedMemory(DynamicShared, SharedMemoryLimits.Sm90OptInBytes);
        _runtime.SetDeviceArchitecture(80); // the attribute was set for an sm_90; this device allows less
        const int bytes = 200_000;
        var e = Assert.Throws<KernelException>(() => ReverseThroughShared(bytes / sizeof(float)))!;
        Assert.That(e.Message, Does.EndWith(SharedMemoryLimits.LaunchAboveDevice(bytes, SharedMemoryLimits.Sm80OptInBytes, 80)));
    }

    [Test]
    public void OnlyTheTargetArchitecturesAreEmulated()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => _runtime.SetDeviceArchitecture(75))!;
        Assert.That(e.Message, Does.Contain("sm_75").And.Contain("80").And.Contain("90"));
        Assert.That(_runtime.DeviceArchitecture, Is.EqualTo(90));
    }

    /// <summary>
    /// The launch layer raises the attribute for every op that needs more than 48 KB (attention with a
    /// large head dim, sampling's radix-select histograms), on either target device,
    /// and its results still match the Cpu backend.
    /// </summary>
    [TestCase(90)]
    [TestCase(80)]
    public void LaunchersOptInBeforeLaunchingAbove48Kb(int arch)
    {
        string[] kernels = ["attention_forward_simt_f32", "attention_backward_dq_simt_f32", "attention_backward_dkv_simt_f32", "sample_rows_f32"];
        foreach (var kernel in kernels) ResetAttribute(kernel);
        using var emu = new EmuBackend { DeviceArchitecture = arch };
        using var cpu = new CpuBackend(threads: 2);
        try
        {
            // Head dim 160: 51,968 bytes forward, 62,208 for dQ and 63,104 for dK/dV.
            var heads = new AttentionHeads(2, 1, 160);
            int[] lengths = [19, 4];
            int n = lengths.Sum();
            var q = TestData.Normal(n * heads.QueryWidth, 1);
            var k = TestData.Normal(n * heads.KvWidth, 2);
            var v = TestData.Normal(n * heads.KvWidth, 3);
            var dy = TestData.Normal(n * heads.QueryWidth, 4);
            float[][] Attention(IBackend b)
            {
                using var seqs = Segments.FromLengths(b, lengths);
                using var qt = b.Floats(q, n, heads.QueryWidth);
                using var kt = b.Floats(k, n, heads.KvWidth);
                using var vt = b.Floats(v, n, heads.KvWidth);
                using var dyt = b.Floats(dy, n, heads.QueryWidth);
                using var y = b.Zeros(n, heads.QueryWidth);
                using var lse = b.Zeros(n, heads.NumHeads);
                using var dq = b.Zeros(n, heads.QueryWidth);
                using var dk = b.Zeros(n, heads.KvWidth);
                using var dv = b.Zeros(n, heads.KvWidth);
                b.AttentionForward(qt, kt, vt, seqs, heads, heads.DefaultScale, y, lse);
                b.AttentionBackward(dyt, qt, kt, vt, y, lse, seqs, heads, heads.DefaultScale, dq, dk, dv);
                return [y.ToFloats(), lse.ToFloats(), dq.ToFloats(), dk.ToFloats(), dv.ToFloats()];
            }
            var expected = Attention(cpu);
            var actual = Attention(emu);
            string[] names = ["output", "log-sum-exp", "dq", "dk", "dv"];
            for (int i = 0; i < names.Length; i++)
                TensorAssert.Close(actual[i], TestData.ToDouble(expected[i]), 2e-4, 2e-4, $"attention {names[i]} at head dim 160, sm_{arch}");

            // 5000 tokens with top-k: the radix select's three histograms take 102,400 bytes of shared memory.
            const int rows = 3, vocab = 5000;
            var logits = TestData.Normal(rows * vocab, 5, std: 2f);
            (int[], float[]) Sample(IBackend b)
            {
                using var l = b.Floats(logits, rows, vocab);
                using var tokens = b.Allocate(DType.Int32, new TensorShape(rows));
                using var logProbs = b.Zeros(rows);
                b.Sample(l, new SamplingOptions(1f, 0.9f, 40), 7, 1, tokens, logProbs);
                return (tokens.ToInts(), logProbs.ToFloats());
            }
            var (cpuTokens, cpuLogProbs) = Sample(cpu);
            var (emuTokens, emuLogProbs) = Sample(emu);
            Assert.That(emuTokens, Is.EqualTo(cpuTokens), "sampled tokens");
            Assert.That(emuLogProbs, Is.EqualTo(cpuLogProbs).Within(2e-5f), "sampled log-probs");

            Assert.That(Attribute("attention_forward_simt_f32"), Is.EqualTo((2 * 32 * 161 + 16 * 160 + 128) * 4));
            Assert.That(Attribute("attention_backward_dq_simt_f32"), Is.EqualTo((2 * 32 * 161 + 2 * 16 * 160 + 128) * 4));
            Assert.That(Attribute("attention_backward_dkv_simt_f32"), Is.EqualTo((2 * 16 * 161 + 2 * 32 * 161 + 64 + 256) * 4));
            Assert.That(Attribute("sample_rows_f32"), Is.EqualTo((2048 + 2048 + 1024) * 5 * 4));
        }
        finally
        {
            foreach (var kernel in kernels) ResetAttribute(kernel);
        }
    }

    // ---------------------------------------------------------------- launch bounds

    private void LaunchBounded(Dim3 block, int[] output)
    {
        fixed (int* o = output)
        {
            var args = new KernelArgs();
            _runtime.Launch(Bounded, 1, block, 0, ref args.Ptr((nint)o));
        }
    }

    /// <summary>
    /// ptxas fits a kernel's registers to its launch bounds, and a GPU refuses a larger block; so does the emulator,
    /// whatever the block's shape (the bound counts x * y * z), and a refused launch runs nothing.
    /// </summary>
    [TestCase(65, 1u, 1u)]
    [TestCase(8, 9u, 1u)]
    [TestCase(4, 4u, 5u)]
    [TestCase(1024, 1u, 1u)]
    public void ABlockAboveTheKernelsLaunchBoundsIsRefused(int x, uint y, uint z)
    {
        var output = Enumerable.Repeat(-1, 1024).ToArray();
        var block = new Dim3((uint)x, y, z);
        var e = Assert.Throws<KernelException>(() => LaunchBounded(block, output))!;
        Assert.That(e.Kernel, Is.EqualTo(Bounded));
        Assert.That(e.Message, Does.Contain($"{Bounded}: launch with block {block} = {block.Volume} threads, above the 64 threads per block of " +
                                            "the kernel's __launch_bounds__").And.Contain("CUDA_ERROR_INVALID_VALUE").And.Contain("OR1_BOUNDED_KERNEL"));
        Assert.That(output, Is.All.EqualTo(-1), "a refused launch runs nothing");
    }

    [TestCase(64, 1u, 1u)]
    [TestCase(8, 8u, 1u)]
    [TestCase(4, 4u, 4u)]
    [TestCase(32, 1u, 1u)]
    public void ABlockWithinTheLaunchBoundsRuns(int x, uint y, uint z)
    {
        var block = new Dim3((uint)x, y, z);
        var output = Enumerable.Repeat(-1, 128).ToArray();
        LaunchBounded(block, output);
        Assert.That(output.Take((int)block.Volume), Is.EqualTo(Enumerable.Range(0, (int)block.Volume)));
        Assert.That(output.Skip((int)block.Volume), Is.All.EqualTo(-1));
    }

    // ---------------------------------------------------------------- warp collectives

    private void LaunchMasks(string kernel, int block, int live, int? op = null)
    {
        var output = new int[3 * Math.Max(block, 64)];
        fixed (int* o = output)
        {
            var args = new KernelArgs();
            args.Ptr((nint)o).Int(live);
            if (op is int collective) args.Int(collective);
            _runtime.Launch(kernel, 1, block, 0, ref args);
        }
    }

    private static readonly string[] Collectives = ["__shfl_xor_sync", "__ballot_sync", "__syncwarp"];

    [Test]
    public void ACollectiveWhoseMaskNamesAnExitedLaneFails([Values(0, 1, 2)] int op, [Values(false, true)] bool reverse)
    {
        // 64 threads, 48 still running: warp 1's lanes 16-31 returned before the full-mask collective. Either
        // they exit first (the arrival sees exited lanes) or lanes 0-15 wait first (an exit leaves them waiting).
        _api.SetSchedule(reverse ? 1 : 0);
        var e = Assert.Throws<KernelException>(() => LaunchMasks(FullMask, 64, 48, op))!;
        Assert.That(e.Kernel, Is.EqualTo(FullMask));
        Assert.That(e.Message, Does.Contain("block (0, 0, 0)").And.Contain("warp 1").And.Contain(Collectives[op]).And.Contain("mask 0xffffffff"));
        Assert.That(e.Message, reverse ? Does.Contain("names exited lanes 16-31") : Does.Contain("lane 16 exits while lanes 0-15 wait"));
    }

    [Test]
    public void APartialWarpWithTheFullMaskFails([Values(0, 1, 2)] int op)
    {
        // 40 threads: warp 1 has lanes 0-7 only, and the full mask names 8-31 as well.
        var e = Assert.Throws<KernelException>(() => LaunchMasks(FullMask, 40, 40, op))!;
        Assert.That(e.Message, Does.Contain(FullMask).And.Contain("block (0, 0, 0)").And.Contain("warp 1").And.Contain("mask 0xffffffff")
            .And.Contain("nonexistent lanes 8-31").And.Contain("the block has 40 threads"));
    }

    [Test]
    public void ALaneOutsideItsOwnMaskFails()
    {
        var e = Assert.Throws<KernelException>(() => LaunchMasks(FullMask, 32, 32, 3))!;
        Assert.That(e.Message, Does.Contain("warp 0: lane 1 calls __syncwarp with mask 0x00000001, which does not name it"));
    }

    [TestCase(64, 40, false)]
    [TestCase(40, 40, false)]
    [TestCase(40, 40, true)]
    [TestCase(96, 71, true)]
    public void AMaskOfTheLiveLanesWorks(int block, int live, bool reverse)
    {
        _api.SetSchedule(reverse ? 1 : 0);
        var output = new int[3 * block];
        fixed (int* o = output)
        {
            var args = new KernelArgs();
            _runtime.Launch(LiveMask, 1, block, 0, ref args.Ptr((nint)o).Int(live));
        }
        for (int t = 0; t < live; t++)
        {
            int lanes = Math.Min(32, live - (t & ~31)), lane = t & 31;
            uint odd = 0;
            for (int l = 1; l < lanes; l += 2) odd |= 1u << l;
            Assert.That(output[3 * t], Is.EqualTo(100), $"broadcast from lane 0, thread {t}");
            Assert.That((uint)output[3 * t + 1], Is.EqualTo(odd), $"ballot, thread {t}");
            if (lane == 0) Assert.That(output[3 * t + 2], Is.EqualTo(lanes * (lanes - 1) / 2), $"guarded shuffle-down sum, warp {t / 32}");
        }
    }

    // ---------------------------------------------------------------- alignment

    /// <summary>
    /// A 16-byte access (kernels/vector_io.cuh's load16 / store16: LDG.E.128 / STG.E.128) off the 16-byte grid faults
    /// on a GPU with CUDA_ERROR_MISALIGNED_ADDRESS; the emulator fails the launch naming the access, so a kernel that
    /// moves a view at an odd offset in 16-byte packs without splitting off its scalar ends fails in CI.
    /// </summary>
    [TestCase(0, 0, null)]
    [TestCase(4, 0, "16-byte global load")]
    [TestCase(0, 8, "16-byte global store")]
    public void A16ByteAccessOffThe16ByteGridFails(int sourceOffsetBytes, int destinationOffsetBytes, string? refused)
    {
        float* source = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(64, 16);
        float* destination = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(64, 16);
        try
        {
            for (int i = 0; i < 16; i++) (source[i], destination[i]) = (i + 1, -1);
            nint from = (nint)source + sourceOffsetBytes, to = (nint)destination + destinationOffsetBytes;
            void Copy()
            {
                var args = new KernelArgs();
                _runtime.Launch(VectorCopy, 1, 1, 0, ref args.Ptr(from).Ptr(to));
            }
            if (refused is null)
            {
                Copy();
                Assert.That(new ReadOnlySpan<float>(destination, 5).ToArray(), Is.EqualTo(new float[] { 1, 2, 3, 4, -1 }));
                return;
            }
            var e = Assert.Throws<KernelException>(Copy)!;
            Assert.That(e.Kernel, Is.EqualTo(VectorCopy));
            Assert.That(e.Message, Does.Contain(refused).And.Contain("is not 16-byte aligned").And.Contain("CUDA_ERROR_MISALIGNED_ADDRESS"));
            Assert.That(new ReadOnlySpan<float>(destination, 16).ToArray(), Is.All.EqualTo(-1f), "the refused access wrote nothing");
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree(source);
            System.Runtime.InteropServices.NativeMemory.AlignedFree(destination);
        }
    }
}

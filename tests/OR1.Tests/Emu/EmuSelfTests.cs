using System.Text;
using OR1.Native;
using OR1.Native.Emu;
using OR1.Native.Kernels;
using OR1.Tests.Support;

namespace OR1.Tests.Emu;

/// <summary>
/// The CUDA execution-model emulator itself (kernels/emu): the self-test kernels of
/// kernels/emu/selftest.cu launched through the same C entry point the Emu backend uses (the CTest
/// executable or1_emu_selftest runs them too), and the schedule check that every op kernel is free of
/// intra-block races: its result must not change when the threads of each block run in reverse order.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed unsafe class EmuSelfTests
{
    private EmuLibrary.Api _api = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _api = EmuOrIgnore.Open(EmuLibrary.Get);
    }

    /// <summary>Launches by name through or1_emu_launch (cuLaunchKernel's shape); returns the error code.</summary>
    private int Launch(string kernel, uint grid, uint block, uint shared, params nint[] pointerArgs)
    {
        // args[i] points at the i-th argument value; pointer values are kept in a pinned array.
        var values = pointerArgs;
        fixed (nint* v = values)
        {
            void** args = stackalloc void*[Math.Max(1, values.Length)];
            for (int i = 0; i < values.Length; i++) args[i] = v + i;
            byte[] name = Encoding.UTF8.GetBytes(kernel + "\0");
            fixed (byte* n = name) return _api.Launch(n, grid, 1, 1, block, 1, 1, shared, args);
        }
    }

    private void LaunchOk(string kernel, uint grid, uint block, uint shared, params nint[] pointerArgs)
    {
        int rc = Launch(kernel, grid, block, shared, pointerArgs);
        Assert.That(rc, Is.Zero, () => $"{kernel}: {EmuLibrary.LastError(_api)}");
    }

    [Test]
    public void RegistryHoldsEveryKernelFamily()
    {
        var names = EmuBackend.KernelNames();
        foreach (var kernel in new[] { "attention_forward_simt_f32", "attention_backward_dkv_simt_bf16", "attention_forward_bf16_d128", "attention_backward_dkv_bf16_d64", "attention_backward_dq_bf16_d256", "attention_backward_dk_bf16_d256", "attention_decode_split_g8_bf16", "attention_decode_split_scalar_g1_f32", "attention_decode_combine_bf16", "rmsnorm_forward_f32",
                     "rmsnorm_forward_bf16", "rope_apply_bf16", "logprob_fold", "logprob_grad_bf16", "sample_rows_bf16", "adamw_step", "sumsq_multi",
                     "embedding_backward_bf16", "policy_loss_forward", "gemm_f32", "gemm_bf16", "gemm_bf16_f32", "convert_f32_bf16", "convert_bf16_f32",
                     "tc_probe_mma_bf16", "tc_probe_mma_tf32", "tc_probe_ldmatrix", "tc_probe_cp_async", "tc_matmul_bf16", "tc_matmul_tf32" })
            Assert.That(names, Does.Contain(kernel));
        // Every kernel every source exports is in the library (the registration macros and the emulator agree).
        string sources = Path.Combine(AppContext.BaseDirectory, "kernels", "src");
        foreach (string file in Directory.EnumerateFiles(sources, "*.cu"))
            foreach (string kernel in KernelSourceNames.Exported(File.ReadAllText(file)))
                Assert.That(names, Does.Contain(kernel), $"{Path.GetFileName(file)} exports {kernel}");
    }

    [Test]
    public void BarrierOrderedSharedMemoryExchange()
    {
        const int blocks = 3, n = 97;
        var output = new int[blocks * n];
        fixed (int* o = output) LaunchOk("emu_selftest_exchange", blocks, n, 0, (nint)o);
        for (int b = 0; b < blocks; b++)
            for (int i = 0; i < n; i++)
                Assert.That(output[b * n + i], Is.EqualTo(2 * ((i + 1) % n) + 1 + 1000 * b), $"block {b} thread {i}");
    }

    [Test]
    public void ShufflesXorUpDownAndIndexed()
    {
        const int n = 64;
        var output = new int[4 * n];
        fixed (int* o = output) LaunchOk("emu_selftest_shuffle", 1, n, 0, (nint)o);
        for (int t = 0; t < n; t++)
        {
            int lane = t & 31;
            Assert.That(output[4 * t + 0], Is.EqualTo(100 + (lane ^ 5)), $"xor, thread {t}");
            Assert.That(output[4 * t + 1], Is.EqualTo(100 + (lane >= 3 ? lane - 3 : lane)), $"up, thread {t}");
            Assert.That(output[4 * t + 2], Is.EqualTo(100 + (lane + 3 < 32 ? lane + 3 : lane)), $"down, thread {t}");
            Assert.That(output[4 * t + 3], Is.EqualTo(100 + (lane & ~7) + 7), $"idx with width 8, thread {t}");
        }
    }

    [Test]
    public void BlockReductionAndBallot()
    {
        const int blocks = 5, n = 256;
        var x = Enumerable.Range(0, blocks * n).Select(i => (float)(i % 7)).ToArray();
        var sums = new float[blocks];
        var ballots = new uint[blocks * n / 32];
        fixed (float* px = x)
        fixed (float* ps = sums)
        fixed (uint* pb = ballots)
            LaunchOk("emu_selftest_reduce", blocks, n, 0, (nint)px, (nint)ps, (nint)pb);
        for (int b = 0; b < blocks; b++)
            Assert.That(sums[b], Is.EqualTo(x.Skip(b * n).Take(n).Sum()));
        for (int w = 0; w < ballots.Length; w++)
        {
            uint expected = 0;
            for (int l = 0; l < 32; l++) expected |= ((int)x[w * 32 + l] & 1) == 1 ? 1u << l : 0;
            Assert.That(ballots[w], Is.EqualTo(expected), $"ballot of warp {w}");
        }
    }

    [Test]
    public void ARaceIsDeterministicAndTheReverseScheduleMakesItVisible()
    {
        const int n = 128;
        int Run(bool reverse)
        {
            int winner = -1;
            _api.SetSchedule(reverse ? 1 : 0);
            try { LaunchOk("emu_selftest_race", 1, n, 0, (nint)(&winner)); }
            finally { _api.SetSchedule(0); }
            return winner;
        }
        int first = Run(false);
        Assert.That(Run(false), Is.EqualTo(first), "the same schedule gives the same winner");
        Assert.That(first, Is.EqualTo(n - 1), "ascending order: the last thread writes last");
        Assert.That(Run(true), Is.Not.EqualTo(first), "the reverse schedule exposes the race");
    }

    [Test]
    public void AtomicsAcrossBlocksOnSeveralHostThreads()
    {
        int counter = 0, maximum = -1, winner = -1;
        float sum = 0;
        const int blocks = 16, n = 128;
        LaunchOk("emu_selftest_atomics", blocks, n, 0, (nint)(&counter), (nint)(&sum), (nint)(&maximum), (nint)(&winner));
        Assert.That(counter, Is.EqualTo(blocks * n));
        Assert.That(sum, Is.EqualTo(0.5f * blocks * n));
        Assert.That(maximum, Is.EqualTo(blocks * n - 1));
        Assert.That(winner, Is.InRange(0, blocks * n - 1));
    }

    [Test]
    public void DivergentBarrierIsReportedAsADeadlockNotAHang()
    {
        var output = new int[64];
        int rc;
        fixed (int* o = output) rc = Launch("emu_selftest_deadlock", 1, 64, 0, (nint)o);
        Assert.That(rc, Is.Not.Zero);
        Assert.That(EmuLibrary.LastError(_api), Does.Contain("deadlock").And.Contain("emu_selftest_deadlock"));
    }

    [Test]
    public void ExitedThreadsDoNotHoldBackABarrier()
    {
        var output = new int[64];
        fixed (int* o = output) LaunchOk("emu_selftest_early_exit", 1, 64, 0, (nint)o);
        Assert.That(output.Take(40), Is.All.EqualTo(7));
    }

    [Test]
    public void LaunchConfigurationErrorsAreTypedKernelExceptions()
    {
        using var runtime = new EmuRuntime();
        var args = new KernelArgs();
        var e = Assert.Throws<KernelException>(() => runtime.Launch("emu_selftest_race", 1, 2048, 0, ref args.Ptr(0)))!;
        Assert.That(e.Message, Does.Contain("Emu kernel 'emu_selftest_race' failed").And.Contain("invalid block"));
        var missing = Assert.Throws<KernelException>(() => runtime.Launch("no_such_kernel", 1, 32, 0, ref args))!;
        Assert.That(missing.Kernel, Is.EqualTo("no_such_kernel"));
        var wrongArity = new KernelArgs();
        var arity = Assert.Throws<KernelException>(() => runtime.Launch("emu_selftest_race", 1, 32, 0, ref wrongArity.Ptr(0).Int(1)))!;
        Assert.That(arity.Message, Does.Contain("2 arguments, the kernel takes 1"));
        var wrongSize = new KernelArgs();
        var size = Assert.Throws<KernelException>(() => runtime.Launch("emu_selftest_race", 1, 32, 0, ref wrongSize.Int(0)))!;
        Assert.That(size.Message, Does.Contain("argument 0 is 4 bytes, the kernel's parameter is 8"));
        Assert.That(Launch("no_such_kernel", 1, 32, 0), Is.EqualTo(1));
        Assert.That(Launch("emu_selftest_race", 1, 2048, 0, 0), Is.EqualTo(2), "a 2048-thread block is rejected as on a GPU");
        Assert.That(EmuLibrary.LastError(_api), Does.Contain("invalid block"));
    }

    /// <summary>
    /// Every op whose kernels use shared memory, barriers or warp shuffles, run under the ascending and
    /// the descending schedule: bit-identical results show the kernels have no intra-block race.
    /// </summary>
    [Test]
    public void OpKernelsGiveIdenticalResultsUnderTheReverseSchedule()
    {
        using var backend = new EmuBackend();
        float[][] Run(bool reverse)
        {
            backend.SetReverseSchedule(reverse);
            try
            {
                var results = new List<float[]>();
                var heads = new AttentionHeads(4, 2, 40);
                int[] lengths = [37, 5, 20];
                int n = lengths.Sum();
                using var seqs = Segments.FromLengths(backend, lengths);
                using var q = backend.Floats(TestData.Normal(n * heads.QueryWidth, 1), n, heads.QueryWidth);
                using var k = backend.Floats(TestData.Normal(n * heads.KvWidth, 2), n, heads.KvWidth);
                using var v = backend.Floats(TestData.Normal(n * heads.KvWidth, 3), n, heads.KvWidth);
                using var dy = backend.Floats(TestData.Normal(n * heads.QueryWidth, 4), n, heads.QueryWidth);
                using var y = backend.Zeros(n, heads.QueryWidth);
                using var lse = backend.Zeros(n, heads.NumHeads);
                using var dq = backend.Zeros(n, heads.QueryWidth);
                using var dk = backend.Zeros(n, heads.KvWidth);
                using var dv = backend.Zeros(n, heads.KvWidth);
                backend.AttentionForward(q, k, v, seqs, heads, heads.DefaultScale, y, lse);
                backend.AttentionBackward(dy, q, k, v, y, lse, seqs, heads, heads.DefaultScale, dq, dk, dv);
                results.AddRange([y.ToFloats(), lse.ToFloats(), dq.ToFloats(), dk.ToFloats(), dv.ToFloats()]);

                // Decode of one row with a cache long enough to split (the split kernel's merge through shared memory, then the
                // combine), on the 16-byte path (head dim 40) and the scalar one (head dim 12).
                foreach (var decodeHeads in (ReadOnlySpan<AttentionHeads>)[heads, new AttentionHeads(7, 1, 12)])
                {
                    const int decodeRows = 1, cacheLength = 1100;
                    using var dq1 = backend.Floats(TestData.Normal(decodeRows * decodeHeads.QueryWidth, 9), decodeRows, decodeHeads.QueryWidth);
                    using var kc = backend.Floats(TestData.Normal(decodeRows * cacheLength * decodeHeads.KvWidth, 10), decodeRows, cacheLength, decodeHeads.KvWidth);
                    using var vc = backend.Floats(TestData.Normal(decodeRows * cacheLength * decodeHeads.KvWidth, 11), decodeRows, cacheLength, decodeHeads.KvWidth);
                    using var slots = backend.Ints([0], decodeRows);
                    using var cacheLengths = backend.Ints([cacheLength - 3], decodeRows);
                    using var decoded = backend.Zeros(decodeRows, decodeHeads.QueryWidth);
                    backend.AttentionDecode(dq1, kc, vc, slots, cacheLengths, decodeHeads, decodeHeads.DefaultScale, decoded);
                    results.Add(decoded.ToFloats());
                }

                using var w = backend.Floats(TestData.Uniform(heads.QueryWidth, 5), heads.QueryWidth);
                using var normed = backend.Zeros(n, heads.QueryWidth);
                using var inv = backend.Zeros(n);
                backend.RmsNormForward(q, w, 1e-6f, normed, inv);
                results.AddRange([normed.ToFloats(), inv.ToFloats()]);

                // The column sums of the weight and bias gradients reduce through shared memory (kernels/column_sums.cuh).
                using var dNormed = backend.Floats(TestData.Normal(n * heads.QueryWidth, 9), n, heads.QueryWidth);
                using var dInput = backend.Zeros(n, heads.QueryWidth);
                using var dw = backend.Zeros(heads.QueryWidth);
                using var dBias = backend.Zeros(heads.QueryWidth);
                backend.RmsNormBackward(dNormed, q, w, inv, dInput, dw);
                backend.BiasBackward(dNormed, dBias);
                using var dNormed16 = backend.BFloat16s(TestData.Normal(n * heads.QueryWidth, 10), n, heads.QueryWidth);
                using var dBias16 = backend.Zeros(heads.QueryWidth);
                backend.BiasBackward(dNormed16, dBias16);
                results.AddRange([dInput.ToFloats(), dw.ToFloats(), dBias.ToFloats(), dBias16.ToFloats()]);

                const int vocab = 3000;
                using var weight = backend.Floats(TestData.Normal(vocab * heads.QueryWidth, 6, std: 0.3f), vocab, heads.QueryWidth);
                using var targets = backend.Ints(TestData.Ints(n, vocab, 7), n);
                using var lp = backend.Zeros(n);
                using var ent = backend.Zeros(n);
                using var lse2 = backend.Zeros(n);
                backend.LogProbForward(q, weight, targets, 0.9f, lp, ent, lse2);
                results.AddRange([lp.ToFloats(), ent.ToFloats(), lse2.ToFloats()]);

                using var logits = backend.Floats(TestData.Normal(16 * vocab, 8, std: 2f), 16, vocab);
                using var tokens = backend.Allocate(DType.Int32, new TensorShape(16));
                using var tokenLogProbs = backend.Zeros(16);
                backend.Sample(logits, new SamplingOptions(1f, 0.9f, 50), 3, 4, tokens, tokenLogProbs);
                results.Add(tokens.ToInts().Select(t => (float)t).ToArray());
                results.Add(tokenLogProbs.ToFloats());
                return [.. results];
            }
            finally
            {
                backend.SetReverseSchedule(false);
            }
        }
        var ascending = Run(false);
        var descending = Run(true);
        for (int i = 0; i < ascending.Length; i++)
            Assert.That(descending[i], Is.EqualTo(ascending[i]), $"result {i} depends on the order of threads within a block");
    }
}

using OR1.Native;
using OR1.Native.Emu;
using OR1.Native.Kernels;
using OR1.Tests.Support;

namespace OR1.Tests.Emu;

/// <summary>
/// The warp matrix instructions behind kernels/mma.cuh (mma.sync m16n8k16 bf16 and m16n8k8 tf32, ldmatrix, cp.async)
/// against the PTX ISA, through the probe kernels of kernels/tensorcore_check.cu: the fragment tables are written out
/// below from the ISA ("Matrix fragments for mma.m16n8k16 with floating point type", "Matrix fragments for
/// mma.m16n8k8", the ldmatrix section) and every register of every lane is checked against them; whole products
/// through cp.async, ldmatrix and mma are compared with a double product; and the emulator refuses what a GPU leaves
/// undefined (an exited or diverged lane at a .aligned instruction, misaligned or non-shared addresses, a read before
/// cp.async.wait_group). Runs on the emulator and, where there is one, on a GPU (category Gpu), where the same
/// tables must hold: that run is what shows the emulator right.
/// </summary>
/// <remarks>
/// An mma alone cannot tell its layouts from a consistent relabelling (rows of A and D permuted together, say, give
/// the same product), so the probes anchor on the accumulator table: the A and B experiments read D through it, and
/// the identity experiment reports each D register's (row, column) from the value it holds. ldmatrix is anchored in
/// memory, so its table is checked absolutely.
/// </remarks>
[TestFixtureSource(nameof(Backends))]
[NonParallelizable]
public sealed unsafe class TensorCoreInstructionTests
{
    public static IEnumerable<TestFixtureData> Backends() =>
        BackendCases.All().Where(f => ((BackendCase)f.Arguments[0]!).Name is "Emu" or "Cuda");

    private readonly BackendCase _case;
    private KernelBackend _backend = null!;
    private IKernelRuntime _runtime = null!;
    private readonly List<nint> _buffers = [];

    public TensorCoreInstructionTests(BackendCase backendCase) => _case = backendCase;

    [OneTimeSetUp]
    public void Open()
    {
        _backend = (KernelBackend)_case.CreateOrIgnore();
        _runtime = _backend.DeviceRuntime;
    }

    [OneTimeTearDown]
    public void Close() => _backend?.Dispose();

    [TearDown]
    public void FreeBuffers()
    {
        foreach (nint p in _buffers) _runtime.Free(p);
        _buffers.Clear();
    }

    private bool OnEmulator => _runtime.Kind == BackendKind.Emu;

    /// <summary>The refusals are the emulator's: on a GPU these kernels are undefined behaviour or a fault that poisons the context.</summary>
    private void RequireEmulator()
    {
        if (!OnEmulator) Assert.Ignore("a GPU does not refuse this (undefined behaviour, or a sticky fault that ends the context): only the emulator's refusal is tested");
    }

    // ---------------------------------------------------------------- device memory and launches

    private nint Device<T>(T[] values) where T : unmanaged
    {
        long bytes = (long)values.Length * sizeof(T);
        nint p = _runtime.Allocate(Math.Max(bytes, 16));
        _buffers.Add(p);
        fixed (T* source = values) _runtime.CopyHostToDevice(source, p, bytes);
        return p;
    }

    private nint DeviceZeros(long bytes)
    {
        nint p = _runtime.Allocate(bytes);
        _buffers.Add(p);
        return p;
    }

    private T[] Read<T>(nint p, int count) where T : unmanaged
    {
        var values = new T[count];
        fixed (T* destination = values) _runtime.CopyDeviceToHost(p, destination, (long)count * sizeof(T));
        return values;
    }

    private void Launch(string kernel, int blocks, int sharedBytes, ref KernelArgs args, int threads = 32) =>
        _runtime.Launch(kernel, blocks, threads, sharedBytes, ref args);

    // ---------------------------------------------------------------- the PTX ISA's tables, written out
    // groupID = %laneid >> 2, threadID_in_group = %laneid % 4 (the ISA's names).

    /// <summary>m16n8k16 .bf16, matrix A (16x16): element a_i, i = 0..7, two per .b32 register (a0 in the low half of register 0).</summary>
    private static (int Row, int Col) Bf16A(int lane, int i)
    {
        int groupId = lane >> 2, threadInGroup = lane % 4;
        int row = i is 0 or 1 or 4 or 5 ? groupId : groupId + 8;                                   // a0,a1,a4,a5 | a2,a3,a6,a7
        int col = i < 4 ? threadInGroup * 2 + (i & 1) : threadInGroup * 2 + (i & 1) + 8;           // a0..a3 | a4..a7
        return (row, col);
    }

    /// <summary>m16n8k16 .bf16, matrix B (16x8): element b_i, i = 0..3, two per register.</summary>
    private static (int Row, int Col) Bf16B(int lane, int i)
    {
        int groupId = lane >> 2, threadInGroup = lane % 4;
        int row = i < 2 ? threadInGroup * 2 + (i & 1) : threadInGroup * 2 + (i & 1) + 8;           // b0,b1 | b2,b3
        return (row, groupId);
    }

    /// <summary>Accumulators C and D (16x8 .f32) of both shapes: c_i, i = 0..3, one per register.</summary>
    private static (int Row, int Col) Accumulator(int lane, int i)
    {
        int groupId = lane >> 2, threadInGroup = lane % 4;
        int row = i < 2 ? groupId : groupId + 8;                                                    // c0,c1 | c2,c3
        return (row, threadInGroup * 2 + (i & 1));
    }

    /// <summary>m16n8k8 .tf32, matrix A (16x8): element a_i, i = 0..3, one per register.</summary>
    private static (int Row, int Col) Tf32A(int lane, int i)
    {
        int groupId = lane >> 2, threadInGroup = lane % 4;
        int row = i is 0 or 2 ? groupId : groupId + 8;                                              // a0,a2 | a1,a3
        int col = i < 2 ? threadInGroup : threadInGroup + 4;                                        // a0,a1 | a2,a3
        return (row, col);
    }

    /// <summary>m16n8k8 .tf32, matrix B (8x8): element b_i, i = 0..1, one per register.</summary>
    private static (int Row, int Col) Tf32B(int lane, int i)
    {
        int groupId = lane >> 2, threadInGroup = lane % 4;
        return (i == 0 ? threadInGroup : threadInGroup + 4, groupId);                               // b0 | b1
    }

    /// <summary>
    /// ldmatrix .m8n8 .b16: in the register of matrix m, lane l receives row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1
    /// (the lower column in the low half); with .trans, those positions of the transposed matrix.
    /// </summary>
    private static ((int Row, int Col) Low, (int Row, int Col) High) Ldmatrix(int lane, bool trans)
    {
        int row = lane / 4, col = 2 * (lane % 4);
        return trans ? ((col, row), (col + 1, row)) : ((row, col), (row, col + 1));
    }

    // ---------------------------------------------------------------- mma layouts

    private sealed record MmaShape(string Kernel, int K, bool Bf16, int AElements, int BElements,
        Func<int, int, (int Row, int Col)> A, Func<int, int, (int Row, int Col)> B)
    {
        public int PerRegister => Bf16 ? 2 : 1;
        public int ARegisters => AElements / PerRegister;
        public int BRegisters => BElements / PerRegister;
        public uint Bits(float v) => Bf16 ? ((BFloat16)v).Bits : BitConverter.SingleToUInt32Bits(v);
        public override string ToString() => Kernel;
    }

    private static readonly MmaShape Bf16Shape = new("tc_probe_mma_bf16", 16, true, 8, 4, Bf16A, Bf16B);
    private static readonly MmaShape Tf32Shape = new("tc_probe_mma_tf32", 8, false, 4, 2, Tf32A, Tf32B);

    public static IEnumerable<TestCaseData> Shapes() =>
        [new TestCaseData("bf16").SetName("{m}(m16n8k16 bf16)"), new TestCaseData("tf32").SetName("{m}(m16n8k8 tf32)")];

    private static MmaShape ShapeOf(string name) => name == "bf16" ? Bf16Shape : Tf32Shape;

    /// <summary>One experiment's registers, 32 lanes each: A, B, C as the kernel takes them.</summary>
    private sealed class Fragments(MmaShape shape)
    {
        public readonly uint[] A = new uint[32 * shape.ARegisters];
        public readonly uint[] B = new uint[32 * shape.BRegisters];
        public readonly float[] C = new float[32 * 4];

        /// <summary>Writes matrix element value(row, col) into every slot the table maps to it.</summary>
        public void Fill(uint[] registers, int elements, Func<int, int, (int Row, int Col)> table, Func<int, int, float> value)
        {
            int perLane = elements / shape.PerRegister;
            for (int lane = 0; lane < 32; lane++)
                for (int e = 0; e < elements; e++)
                {
                    var (row, col) = table(lane, e);
                    SetSlot(registers, perLane, lane, e, shape.Bits(value(row, col)));
                }
        }

        /// <summary>Element e of a lane: register e / PerRegister, the low half for even e (bf16).</summary>
        public void SetSlot(uint[] registers, int perLane, int lane, int e, uint bits)
        {
            int shift = 16 * (e % shape.PerRegister);
            ref uint register = ref registers[lane * perLane + e / shape.PerRegister];
            register = (register & ~((shape.Bf16 ? 0xFFFFu : 0xFFFFFFFFu) << shift)) | (bits << shift);
        }

        public void FillC(Func<int, int, float> value)
        {
            for (int lane = 0; lane < 32; lane++)
                for (int i = 0; i < 4; i++)
                {
                    var (row, col) = Accumulator(lane, i);
                    C[lane * 4 + i] = value(row, col);
                }
        }
    }

    /// <summary>Runs one probe block per experiment; returns each experiment's 32 x 4 D registers.</summary>
    private float[][] RunMma(MmaShape shape, IReadOnlyList<Fragments> experiments, int fault = 0, int threads = 32)
    {
        var a = experiments.SelectMany(f => f.A).ToArray();
        var b = experiments.SelectMany(f => f.B).ToArray();
        var c = experiments.SelectMany(f => f.C).ToArray();
        nint pa = Device(a), pb = Device(b), pc = Device(c), pd = DeviceZeros(c.Length * sizeof(float));
        var args = new KernelArgs();
        args.Ptr(pa).Ptr(pb).Ptr(pc).Ptr(pd);
        if (shape.Bf16) args.Int(fault);
        Launch(shape.Kernel, experiments.Count, 0, ref args, threads);
        var d = Read<float>(pd, c.Length);
        return Enumerable.Range(0, experiments.Count).Select(e => d.AsSpan(e * 128, 128).ToArray()).ToArray();
    }

    /// <summary>Code of a matrix position: 1 + row + 16 col, an integer of at most 256, exact in bf16 and tf32.</summary>
    private static float Code(int row, int col) => 1 + row + 16 * col;

    [TestCaseSource(nameof(Shapes))]
    public void EveryRegisterOfEveryLaneHoldsTheIsaElement(string shapeName)
    {
        var shape = ShapeOf(shapeName);
        var experiments = new List<Fragments>();
        // 1. A one-hot in slot (lane, e), B[k][n] = Code(k, n): D's only nonzero row is A's row, holding B's row k.
        for (int lane = 0; lane < 32; lane++)
            for (int e = 0; e < shape.AElements; e++)
            {
                var f = new Fragments(shape);
                f.SetSlot(f.A, shape.ARegisters, lane, e, shape.Bits(1f));
                f.Fill(f.B, shape.BElements, shape.B, Code);
                experiments.Add(f);
            }
        // 2. B one-hot in slot (lane, e), A[m][k] = Code(m, k): D's only nonzero column is B's column, holding A's column k.
        for (int lane = 0; lane < 32; lane++)
            for (int e = 0; e < shape.BElements; e++)
            {
                var f = new Fragments(shape);
                f.SetSlot(f.B, shape.BRegisters, lane, e, shape.Bits(1f));
                f.Fill(f.A, shape.AElements, shape.A, Code);
                experiments.Add(f);
            }
        // 3. A[m][k] = Code(m, k), B = the first 8 rows of the identity: D[m][n] = Code(m, n), each D register names its position.
        var identity = new Fragments(shape);
        identity.Fill(identity.A, shape.AElements, shape.A, Code);
        identity.Fill(identity.B, shape.BElements, shape.B, (k, n) => k == n ? 1f : 0f);
        experiments.Add(identity);
        // 4. The same with C[m][n] = 1000 Code(m, n): D = 1001 Code, so C's registers sit where D's do.
        var withC = new Fragments(shape);
        withC.Fill(withC.A, shape.AElements, shape.A, Code);
        withC.Fill(withC.B, shape.BElements, shape.B, (k, n) => k == n ? 1f : 0f);
        withC.FillC((m, n) => 1000 * Code(m, n));
        experiments.Add(withC);

        var d = RunMma(shape, experiments);
        var mismatches = new List<string>();
        int x = 0;
        for (int lane = 0; lane < 32; lane++)
            for (int e = 0; e < shape.AElements; e++, x++)
            {
                var observed = DecodeOneHotA(d[x], shape.K);
                if (observed != shape.A(lane, e)) mismatches.Add($"a{e} of lane {lane}: ISA (row, col) = {shape.A(lane, e)}, the mma used {Show(observed)}");
            }
        for (int lane = 0; lane < 32; lane++)
            for (int e = 0; e < shape.BElements; e++, x++)
            {
                var observed = DecodeOneHotB(d[x], shape.K);
                if (observed != shape.B(lane, e)) mismatches.Add($"b{e} of lane {lane}: ISA (row, col) = {shape.B(lane, e)}, the mma used {Show(observed)}");
            }
        for (int lane = 0; lane < 32; lane++)
            for (int i = 0; i < 4; i++)
            {
                var observed = DecodePosition(d[x][lane * 4 + i], 1);
                if (observed != Accumulator(lane, i)) mismatches.Add($"d{i} of lane {lane}: ISA (row, col) = {Accumulator(lane, i)}, it holds {Show(observed)}");
                var withAccumulator = DecodePosition(d[x + 1][lane * 4 + i], 1001);
                if (withAccumulator != Accumulator(lane, i))
                    mismatches.Add($"c{i} of lane {lane}: ISA (row, col) = {Accumulator(lane, i)}, D = A B + C gives {Show(withAccumulator)}");
            }
        Assert.That(mismatches, Is.Empty, $"{shape.Kernel} on {_case.Name}: {mismatches.Count} registers off the ISA's table");
    }

    private static string Show((int Row, int Col) p) => p.Row < 0 ? "no single element (the product is not a one-element pick)" : $"({p.Row}, {p.Col})";

    /// <summary>A one-hot A element at (r, k) times B = Code(k, n): D row r = Code(k, 0..7), every other row 0. Returns (r, k).</summary>
    private static (int Row, int Col) DecodeOneHotA(float[] d, int depth)
    {
        int row = -1, k = -1, count = 0;
        for (int lane = 0; lane < 32; lane++)
            for (int i = 0; i < 4; i++)
            {
                float v = d[lane * 4 + i];
                if (v == 0) continue;
                var (r, n) = Accumulator(lane, i);
                float kk = v - 1 - 16 * n;
                if (row >= 0 && (r != row || kk != k) || kk < 0 || kk >= depth || kk != MathF.Floor(kk)) return (-1, -1);
                row = r;
                k = (int)kk;
                count++;
            }
        return count == 8 ? (row, k) : (-1, -1);
    }

    /// <summary>A one-hot B element at (k, n) times A = Code(m, k): D column n = Code(0..15, k), every other column 0. Returns (k, n).</summary>
    private static (int Row, int Col) DecodeOneHotB(float[] d, int depth)
    {
        int col = -1, k = -1, count = 0;
        for (int lane = 0; lane < 32; lane++)
            for (int i = 0; i < 4; i++)
            {
                float v = d[lane * 4 + i];
                if (v == 0) continue;
                var (m, n) = Accumulator(lane, i);
                float kk = (v - 1 - m) / 16;
                if (col >= 0 && (n != col || kk != k) || kk < 0 || kk >= depth || kk != MathF.Floor(kk)) return (-1, -1);
                col = n;
                k = (int)kk;
                count++;
            }
        return count == 16 ? (k, col) : (-1, -1);
    }

    /// <summary>The (row, col) whose Code, times <paramref name="scale"/>, is <paramref name="v"/>.</summary>
    private static (int Row, int Col) DecodePosition(float v, int scale)
    {
        float code = v / scale;
        if (code != MathF.Floor(code) || code < 1 || code > 128 || code * scale != v) return (-1, -1);
        int c = (int)code - 1;
        return (c % 16, c / 16);
    }

    [TestCaseSource(nameof(Shapes))]
    public void TheAccumulatorPassesThroughUnchanged(string shapeName)
    {
        var shape = ShapeOf(shapeName);
        var f = new Fragments(shape);
        var c = TestData.Normal(128, 11);
        c.CopyTo(f.C, 0);
        f.C[5] = float.NegativeInfinity; // (-0 is left out: -0 + 0 . 0 is +0 in IEEE arithmetic)
        var d = RunMma(shape, [f])[0];
        for (int i = 0; i < 128; i++)
            Assert.That(BitConverter.SingleToUInt32Bits(d[i]), Is.EqualTo(BitConverter.SingleToUInt32Bits(f.C[i])), $"D = 0 . 0 + C, register {i % 4} of lane {i / 4}");
    }

    // ---------------------------------------------------------------- whole products

    /// <summary>Sequential fp32 accumulation of c and K exact products: |error| &lt;= (K + 1) u sum |terms|; twice that for a tensor core's own rounding.</summary>
    private static void AssertProduct(float[] actual, double[] a, double[] b, double[] c, int k, string what)
    {
        const double u = 1.0 / (1 << 24);
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 8; n++)
            {
                double exact = c[m * 8 + n], magnitude = Math.Abs(exact);
                for (int p = 0; p < k; p++)
                {
                    exact += a[m * k + p] * b[p * 8 + n];
                    magnitude += Math.Abs(a[m * k + p] * b[p * 8 + n]);
                }
                double bound = 2 * (k + 1) * u * magnitude;
                Assert.That(actual[m * 8 + n], Is.EqualTo(exact).Within(bound), $"{what}: D[{m}][{n}]");
            }
    }

    /// <summary>Row m of A scaled by 2^(m - 8) when spread: products of very different magnitudes in one sum.</summary>
    private static float[] Bf16Matrix(int rows, int cols, int seed, bool spread)
    {
        var v = TestData.Normal(rows * cols, seed);
        for (int i = 0; i < v.Length; i++) v[i] = (float)(BFloat16)(spread ? v[i] * MathF.Pow(2, i / cols - 8) : v[i]);
        return v;
    }

    [TestCase(1, 0, false)]
    [TestCase(2, 1, false)]
    [TestCase(3, 0, true)]
    [TestCase(4, 1, true)]
    public void Bf16ProductThroughCpAsyncLdmatrixAndMma(int seed, int bLayout, bool spread)
    {
        var a = Bf16Matrix(16, 16, seed, spread);
        var b = Bf16Matrix(16, 8, seed + 100, false);
        var c = TestData.Normal(128, seed + 200);
        // bLayout 0: B as [k][n]; 1: B stored transposed, [n][k].
        var bStored = bLayout == 0 ? b : Enumerable.Range(0, 128).Select(i => b[(i % 16) * 8 + i / 16]).ToArray();
        var d = MatmulBf16(a, bStored, c, bLayout, earlyRead: 0);
        AssertProduct(d, TestData.ToDouble(a), TestData.ToDouble(b), TestData.ToDouble(c), 16, $"bf16 seed {seed}, B layout {bLayout}, spread {spread}");
    }

    [Test]
    public void TheProductDoesNotDependOnTheOrderLanesArriveIn()
    {
        // The last lane to reach an ldmatrix or mma executes it for the warp: lane 31 in the ascending schedule,
        // lane 0 in the descending one. Either way the same bits.
        RequireEmulator();
        var a = Bf16Matrix(16, 16, 7, true);
        var b = Bf16Matrix(16, 8, 8, false);
        var c = TestData.Normal(128, 9);
        var emu = (EmuBackend)_backend;
        var ascending = MatmulBf16(a, b, c, bLayout: 0, earlyRead: 0);
        emu.SetReverseSchedule(true);
        try
        {
            Assert.That(MatmulBf16(a, b, c, bLayout: 0, earlyRead: 0), Is.EqualTo(ascending));
        }
        finally
        {
            emu.SetReverseSchedule(false);
        }
    }

    private float[] MatmulBf16(float[] a, float[] bStored, float[] c, int bLayout, int earlyRead)
    {
        nint pa = Device(a.Select(v => ((BFloat16)v).Bits).ToArray()), pb = Device(bStored.Select(v => ((BFloat16)v).Bits).ToArray());
        nint pc = Device(c), pd = DeviceZeros(128 * sizeof(float));
        var args = new KernelArgs();
        Launch("tc_matmul_bf16", 1, 768, ref args.Ptr(pa).Ptr(pb).Ptr(pc).Ptr(pd).Int(bLayout).Int(earlyRead));
        return Read<float>(pd, 128);
    }

    private float[] MatmulTf32(float[] a, float[] b, float[] c, bool convert)
    {
        nint pa = Device(a), pb = Device(b), pc = Device(c), pd = DeviceZeros(128 * sizeof(float));
        var args = new KernelArgs();
        Launch("tc_matmul_tf32", 1, 768, ref args.Ptr(pa).Ptr(pb).Ptr(pc).Ptr(pd).Int(convert ? 1 : 0));
        return Read<float>(pd, 128);
    }

    /// <summary>cvt.rna.tf32.f32 on the host: to nearest, ties away from zero, on the 13 dropped bits.</summary>
    private static float Tf32Rna(float v)
    {
        if (float.IsNaN(v)) return v;
        uint bits = BitConverter.SingleToUInt32Bits(v);
        return BitConverter.UInt32BitsToSingle((bits + 0x1000u) & 0xFFFFE000u);
    }

    [TestCase(1)]
    [TestCase(2)]
    public void Tf32ProductOfConvertedOperands(int seed)
    {
        var a = TestData.Normal(128, seed);
        var b = TestData.Normal(64, seed + 100);
        var c = TestData.Normal(128, seed + 200);
        var d = MatmulTf32(a, b, c, convert: true);
        double[] Rounded(float[] x) => x.Select(v => (double)Tf32Rna(v)).ToArray();
        AssertProduct(d, Rounded(a), Rounded(b), TestData.ToDouble(c), 8, $"tf32 seed {seed}");
        // Operands rounded on the host and passed as they are give the very same bits: float_to_tf32 is cvt.rna.
        var preRounded = MatmulTf32(a.Select(Tf32Rna).ToArray(), b.Select(Tf32Rna).ToArray(), c, convert: false);
        Assert.That(preRounded, Is.EqualTo(d), "host-rounded tf32 operands vs float_to_tf32 on the device");
    }

    [Test]
    public void Tf32OperandsLoseTheirLow13Bits()
    {
        // B = identity: D = A exactly (one product, no sum), so D shows the operand the tensor core used.
        var random = new Random(5);
        var a = Enumerable.Range(0, 128).Select(_ => BitConverter.UInt32BitsToSingle(0x3F800000u | (uint)random.Next(1 << 23))).ToArray();
        var b = Enumerable.Range(0, 64).Select(i => i / 8 == i % 8 ? 1f : 0f).ToArray();
        var d = MatmulTf32(a, b, new float[128], convert: false);
        var truncated = a.Select(v => BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(v) & 0xFFFFE000u)).ToArray();
        if (OnEmulator)
        {
            Assert.That(d, Is.EqualTo(truncated), "the emulator truncates a tf32 operand's low 13 bits (kernels/mma.cuh)");
        }
        else
        {
            // The PTX ISA does not say what a GPU does with them; report it, so the emulation can follow.
            bool truncates = d.SequenceEqual(truncated), rounds = d.SequenceEqual(a.Select(Tf32Rna));
            TestContext.Out.WriteLine($"{_case.Name}: tf32 operands with low bits set are {(truncates ? "truncated" : rounds ? "rounded to nearest (away)" : "treated otherwise")}");
            if (!truncates) Assert.Warn("this GPU does not truncate tf32 operands as the emulator does: make emu_runtime.cpp's tf32_operand follow it");
        }
    }

    // ---------------------------------------------------------------- ldmatrix

    [Test]
    public void LdmatrixX1X2X4AndTransDeliverTheIsaElements()
    {
        // Element (m, r, c) of the four 8x8 matrices: a distinct 16-bit pattern.
        var matrices = Enumerable.Range(0, 256).Select(i => (ushort)(0x1000 * (i / 64) + 0x100 * (i / 8 % 8) + 0x10 * (i % 8) + 1)).ToArray();
        nint pm = Device(matrices), po = DeviceZeros(6 * 32 * 4 * sizeof(uint));
        var args = new KernelArgs();
        Launch("tc_probe_ldmatrix", 1, 0, ref args.Ptr(pm).Ptr(po).Int(0).Int(0));
        var output = Read<uint>(po, 6 * 32 * 4);
        ushort Element(int m, (int Row, int Col) p) => matrices[m * 64 + p.Row * 8 + p.Col];
        string[] names = ["x1", "x2", "x4", "x1.trans", "x2.trans", "x4.trans"];
        var mismatches = new List<string>();
        for (int v = 0; v < 6; v++)
        {
            int count = 1 << (v % 3);
            bool trans = v >= 3;
            for (int lane = 0; lane < 32; lane++)
                for (int r = 0; r < 4; r++)
                {
                    uint expected = 0;
                    if (r < count)
                    {
                        var (low, high) = Ldmatrix(lane, trans);
                        expected = Element(r, low) | (uint)Element(r, high) << 16;
                    }
                    uint actual = output[(v * 32 + lane) * 4 + r];
                    if (actual != expected) mismatches.Add($"{names[v]}: lane {lane} register {r} = 0x{actual:x8}, the ISA gives 0x{expected:x8}");
                }
        }
        Assert.That(mismatches, Is.Empty, $"ldmatrix on {_case.Name}");
    }

    // ---------------------------------------------------------------- cp.async

    [Test]
    public void CpAsyncZeroFillsAndWaitGroupRetiresTheOldestGroups()
    {
        var source = Enumerable.Range(0, 32).Select(i => i + 0.5f).ToArray();
        nint ps = Device(source), pd = DeviceZeros(48 * sizeof(float));
        var args = new KernelArgs();
        Launch("tc_probe_cp_async", 1, 256, ref args.Ptr(ps).Ptr(pd).Int(0));
        var d = Read<float>(pd, 48);
        for (int i = 0; i < 16; i++) Assert.That(d[i], Is.EqualTo(i / 4 == 2 ? 0f : source[i]), $"group 0 after cp.async.wait_group 1, float {i} (chunk 2 has src-size 0)");
        for (int i = 16; i < 32; i++) Assert.That(d[i], Is.EqualTo(source[i]), $"group 1 after cp.async.wait_group 0, float {i}");
    }

    [Test]
    public void AReadBeforeTheWaitSeesNaN()
    {
        RequireEmulator();
        var source = Enumerable.Range(0, 32).Select(i => i + 0.5f).ToArray();
        nint ps = Device(source), pd = DeviceZeros(48 * sizeof(float));
        var args = new KernelArgs();
        Launch("tc_probe_cp_async", 1, 256, ref args.Ptr(ps).Ptr(pd).Int(1));
        var d = Read<float>(pd, 48);
        Assert.That(d.Skip(32), Is.All.NaN, "group 1's destination read between wait_group 1 and wait_group 0");
        Assert.That(d.Skip(16).Take(16), Is.EqualTo(source.Skip(16)), "after its wait the same bytes are there");

        // The whole product: B's fragment loaded before B's group was waited for poisons every output.
        var a = Bf16Matrix(16, 16, 1, false);
        var b = Bf16Matrix(16, 8, 2, false);
        var product = MatmulBf16(a, b, new float[128], bLayout: 0, earlyRead: 1);
        Assert.That(product, Is.All.NaN, "mma over a B tile read before cp_async_wait<0>");
    }

    // ---------------------------------------------------------------- refusals

    private KernelException Refused(string kernel, Action launch)
    {
        var e = Assert.Throws<KernelException>(() => launch())!;
        Assert.That(e.Kernel, Is.EqualTo(kernel));
        Assert.That(e.Message, Does.Contain($"kernel {kernel} block (0, 0, 0)").And.Contain("warp 0"));
        return e;
    }

    private void LaunchMmaProbe(int fault, int threads = 32)
    {
        var f = new Fragments(Bf16Shape);
        RunMma(Bf16Shape, [f], fault, threads);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void AnMmaWithAnExitedLaneFailsNamingTheInstruction(bool reverseSchedule)
    {
        RequireEmulator();
        var emu = (EmuBackend)_backend;
        emu.SetReverseSchedule(reverseSchedule);
        try
        {
            var e = Refused("tc_probe_mma_bf16", () => LaunchMmaProbe(fault: 1));
            Assert.That(e.Message, Does.Contain("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32").And.Contain("lane 31")
                .And.Contain("tensorcore_check.cu:").And.Contain("all 32 lanes"));
        }
        finally
        {
            emu.SetReverseSchedule(false);
        }
    }

    [Test]
    public void AnMmaInADivergedWarpFails()
    {
        RequireEmulator();
        var e = Refused("tc_probe_mma_bf16", () => LaunchMmaProbe(fault: 2));
        Assert.That(e.Message, Does.Contain("lane 16 reaches mma.sync.aligned.m16n8k16").And.Contain("lanes 0-15 wait at mma.sync").And.Contain("diverged"));
    }

    [Test]
    public void AnMmaInAPartialWarpFails()
    {
        RequireEmulator();
        var e = Refused("tc_probe_mma_bf16", () => LaunchMmaProbe(fault: 0, threads: 16));
        Assert.That(e.Message, Does.Contain("mma.sync.aligned").And.Contain("warp 0 has only lanes 0-15"));
    }

    private void LaunchLdmatrixProbe(int misalignBytes, int fromGlobal)
    {
        nint pm = Device(new ushort[256]), po = DeviceZeros(6 * 32 * 4 * sizeof(uint));
        var args = new KernelArgs();
        Launch("tc_probe_ldmatrix", 1, 0, ref args.Ptr(pm).Ptr(po).Int(misalignBytes).Int(fromGlobal));
    }

    [Test]
    public void AMisalignedLdmatrixRowFails()
    {
        RequireEmulator();
        var e = Refused("tc_probe_ldmatrix", () => LaunchLdmatrixProbe(misalignBytes: 8, fromGlobal: 0));
        Assert.That(e.Message, Does.Contain("lane 0: ldmatrix.sync.aligned.m8n8.x1.shared.b16").And.Contain("not 16-byte aligned"));
    }

    [Test]
    public void AnLdmatrixRowOutsideSharedMemoryFails()
    {
        RequireEmulator();
        var e = Refused("tc_probe_ldmatrix", () => LaunchLdmatrixProbe(misalignBytes: 0, fromGlobal: 1));
        Assert.That(e.Message, Does.Contain("ldmatrix.sync.aligned.m8n8.x1.shared.b16").And.Contain("is not in shared memory"));
    }

    [TestCase(2, "destination", "is not in shared memory")]
    [TestCase(3, "destination", "is not 16-byte aligned")]
    [TestCase(4, "source", "is not 16-byte aligned")]
    [TestCase(5, "exits with 1 cp.async copy still pending", "cp_async_wait")]
    [TestCase(6, "source", "is in shared memory")]
    public void CpAsyncRulesAreEnforced(int mode, string subject, string rule)
    {
        RequireEmulator();
        nint ps = Device(new float[32]), pd = DeviceZeros(64 * sizeof(float));
        var e = Refused("tc_probe_cp_async", () =>
        {
            var args = new KernelArgs();
            Launch("tc_probe_cp_async", 1, 256, ref args.Ptr(ps).Ptr(pd).Int(mode));
        });
        Assert.That(e.Message, Does.Contain("lane 0").And.Contain(subject).And.Contain(rule));
        if (mode != 5) Assert.That(e.Message, Does.Contain("cp.async.cg.shared.global"));
    }
}

using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Ops.Bf16Storage;

/// <summary>
/// AdamW with a bf16 working copy (kernels/adamw.cu): the fp32 master parameters and moments must be exactly what the
/// same step computes without a working copy (the copy is a side output of the same pass, it never feeds back), and
/// after every step the working copy must be the updated fp32 parameter rounded to nearest even, bit-identical to the
/// host's <c>(BFloat16)parameter</c>. No tolerance: both are exact requirements. A working copy of the wrong shape or
/// dtype is refused naming the slot.
/// </summary>
[TestFixtureSource(typeof(Bf16BackendCases), nameof(Bf16BackendCases.All))]
public sealed class AdamWBf16Tests(BackendCase backendCase) : OpTestBase(backendCase)
{
    /// <summary>
    /// The tensors with a working copy may be views at element offsets: the master's tensors and the copy off the 16-byte
    /// grid by the same amount (a scalar head, then 16-byte packs and 8-byte copy stores) or by different amounts (the
    /// scalar path); either way the same bits as the aligned tensors without a copy.
    /// </summary>
    [TestCase(0, 0)]
    [TestCase(1, 1)]
    [TestCase(2, 0)]
    public void WorkingCopyIsTheRoundedMasterAndChangesNothingElse(int masterOffset, int copyOffset)
    {
        // Sizes around the kernel's 4096-element chunks; the third tensor has no weight decay, the fourth no working copy.
        int[] sizes = [1, 4097, 9000, 130];
        var options = new AdamWOptions(LearningRate: 3e-3, WeightDecay: 0.1);
        var plain = new List<AdamWSlot>();
        var mixed = new List<AdamWSlot>();
        for (int t = 0; t < sizes.Length; t++)
        {
            int n = sizes[t];
            var p = TestData.Normal(n, 10 + t, std: 0.5f);
            var m = TestData.Uniform(n, 20 + t, -1e-2f, 1e-2f);
            var v = TestData.Uniform(n, 30 + t, 0, 1e-4f);
            bool decay = t != 2;
            plain.Add(new AdamWSlot(Floats(p, n), Zeros(n), Floats(m, n), Floats(v, n), decay));
            var copy = t == 3 ? null : PoisonedViewAt(copyOffset, DType.BFloat16, n);
            var f32 = DType.Float32;
            mixed.Add(new AdamWSlot(ViewAt(masterOffset, f32, p, n), ViewAt(masterOffset, f32, new float[n], n), ViewAt(masterOffset, f32, m, n),
                ViewAt(masterOffset, f32, v, n), decay, copy));
        }

        for (int step = 1; step <= 4; step++)
        {
            for (int t = 0; t < sizes.Length; t++)
            {
                var g = TestData.Normal(sizes[t], 100 * step + t, std: 0.1f);
                Backend.Upload<float>(g, plain[t].Gradient);
                Backend.Upload<float>(g, mixed[t].Gradient);
            }
            float clip = step == 3 ? 0.5f : 1f;
            Backend.AdamWStep(plain, options, step, clip);
            Backend.AdamWStep(mixed, options, step, clip);
            for (int t = 0; t < sizes.Length; t++)
            {
                string what = $"step {step}, tensor {t} ({sizes[t]} elements)";
                var master = mixed[t].Parameter.ToFloats();
                AssertBits(master, plain[t].Parameter.ToFloats(), $"{what}: parameter with a working copy vs without");
                AssertBits(mixed[t].FirstMoment.ToFloats(), plain[t].FirstMoment.ToFloats(), $"{what}: first moment");
                AssertBits(mixed[t].SecondMoment.ToFloats(), plain[t].SecondMoment.ToFloats(), $"{what}: second moment");
                if (mixed[t].WorkingCopy is { } copy)
                    Bf16Bits.Equal(copy.ToBFloat16s(), Bf16Bits.Round(master), $"{what}: working copy = (BFloat16)parameter");
            }
        }
    }

    [Test]
    public void WorkingCopyRoundsTiesToEven()
    {
        // lr = 0 and no decay: the step leaves the parameters as they are, so the copy is the rounding of chosen values.
        float[] p = [Bf16Bits.F(0x3F808000), Bf16Bits.F(0x3F818000), Bf16Bits.F(0x3FFFFFFF), Bf16Bits.F(0xBF807FFF), 0.1f, -0f, 1e-40f];
        int n = p.Length;
        var parameter = Floats(p, n);
        var copy = Own(Backend.PoisonedBFloat16(n));
        Backend.AdamWStep([new AdamWSlot(parameter, Zeros(n), Zeros(n), Zeros(n), WorkingCopy: copy)], new AdamWOptions(0, WeightDecay: 0), 1, 1f);
        Assert.That(parameter.ToFloats(), Is.EqualTo(p));
        Bf16Bits.Equal(copy.ToBFloat16s(), [new(0x3F80), new(0x3F82), new(0x4000), new(0xBF80), new(0x3DCD), new(0x8000), (BFloat16)1e-40f],
            "working copy of ties and near-ties");
    }

    [Test]
    public void WorkingCopyOfTheWrongShapeIsRefusedNamingTheSlot()
    {
        var ok = new AdamWSlot(Floats([1f, 2f], 2), Zeros(2), Zeros(2), Zeros(2), WorkingCopy: Own(Backend.PoisonedBFloat16(2)));
        var w = Own(Backend.Allocate(DType.Float32, new TensorShape(2, 3), "wq"));
        var bad = new AdamWSlot(w, Zeros(2, 3), Zeros(2, 3), Zeros(2, 3), WorkingCopy: Own(Backend.PoisonedBFloat16(3, 2)));
        Assert.That(() => Backend.AdamWStep([ok, bad], new AdamWOptions(1e-3), 1, 1f),
            Throws.ArgumentException.With.Message.Contains("AdamWStep").And.Message.Contains("'slots[1] (wq).WorkingCopy'")
                .And.Message.Contains("[3, 2]").And.Message.Contains("[2, 3]"));
        Assert.That(w.ToFloats(), Is.All.EqualTo(0f), "nothing was updated");
    }

    [Test]
    public void WorkingCopyOfTheWrongDtypeIsRefusedNamingTheSlot()
    {
        var fp32Copy = new AdamWSlot(Floats([1f, 2f], 2), Zeros(2), Zeros(2), Zeros(2), WorkingCopy: Zeros(2));
        Assert.That(() => Backend.AdamWStep([fp32Copy], new AdamWOptions(1e-3), 1, 1f),
            Throws.ArgumentException.With.Message.Contains("AdamWStep").And.Message.Contains("'slots[0].WorkingCopy'")
                .And.Message.Contains("has dtype Float32, expected BFloat16"));
        var intCopy = new AdamWSlot(Floats([1f, 2f], 2), Zeros(2), Zeros(2), Zeros(2), WorkingCopy: Ints([0, 0], 2));
        Assert.That(() => Backend.AdamWStep([intCopy], new AdamWOptions(1e-3), 1, 1f),
            Throws.ArgumentException.With.Message.Contains("AdamWStep").And.Message.Contains("'slots[0].WorkingCopy'").And.Message.Contains("Int32"));
    }

    [Test]
    public void MasterParameterMustStayFp32() =>
        Assert.That(() => Backend.AdamWStep([new AdamWSlot(Own(Backend.PoisonedBFloat16(2)), Zeros(2), Zeros(2), Zeros(2))], new AdamWOptions(1e-3), 1, 1f),
            Throws.ArgumentException.With.Message.Contains("AdamWStep").And.Message.Contains("'slots[0].Parameter'").And.Message.Contains("expected Float32"));

    private static void AssertBits(float[] actual, float[] expected, string what)
    {
        for (int i = 0; i < actual.Length; i++)
        {
            if (BitConverter.SingleToUInt32Bits(actual[i]) != BitConverter.SingleToUInt32Bits(expected[i]))
                Assert.Fail($"{what}: element {i} is {actual[i]:R} (0x{BitConverter.SingleToUInt32Bits(actual[i]):X8}), expected {expected[i]:R} (0x{BitConverter.SingleToUInt32Bits(expected[i]):X8})");
        }
    }
}

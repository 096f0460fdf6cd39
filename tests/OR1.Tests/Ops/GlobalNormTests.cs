using OR1.Native;
using OR1.Native.Kernels;
using OR1.Tests.Support;

namespace OR1.Tests.Ops;

/// <summary>
/// What the global-norm tests share: a model-sized list of gradient tensors (339, a 1.5B Qwen2's count) of assorted
/// sizes, most of them views of one pool at offsets that cover every 16-byte misalignment, some allocated alone.
/// </summary>
public abstract class GlobalNormTestBase(BackendCase backendCase) : OpTestBase(backendCase)
{
    protected const int ModelTensorCount = 339;

    /// <summary>Sizes around the kernel's boundaries: empty, below a float4, one past a chunk (16384) and several chunks.</summary>
    private static readonly int[] Sizes = [0, 1, 3, 4, 5, 7, 8, 31, 33, 255, 1000, 4095, 4096, 4097, 16383, 16384, 16385, 40_000];

    /// <summary>
    /// The tensors and their values. Each tensor's values are scaled so that its sum of squares is about 1: a lost
    /// chunk, head or tail of any tensor then moves the norm far beyond the tolerance. The last tensor is small, so
    /// that the last chunk of the whole list carries a whole tensor's weight.
    /// </summary>
    protected (List<Tensor> Tensors, List<double[]> Values) AssortedTensors(int count, int seed)
    {
        var sizes = new int[count];
        for (int i = 0; i < count; i++) sizes[i] = Sizes[i % Sizes.Length];
        sizes[count / 3] = 70_001;
        sizes[count - 1] = 5;
        var values = new List<double[]>(count);
        var data = new List<float[]>(count);
        for (int i = 0; i < count; i++)
        {
            float scale = MathF.Sqrt(3f / Math.Max(1, sizes[i]));
            var x = TestData.Uniform(sizes[i], seed + i).Select(v => v * scale).ToArray();
            data.Add(x);
            values.Add(TestData.ToDouble(x));
        }

        // Pool offsets advance by the size plus a gap of 0..3 floats, so starts fall on every residue mod 4.
        var offsets = new long[count];
        long total = 0;
        for (int i = 0; i < count; i++)
        {
            offsets[i] = total;
            total += sizes[i] + i % 4 + (i % 5 == 0 ? 1 : 0);
        }
        var pool = new float[total];
        for (int i = 0; i < count; i++) data[i].CopyTo(pool, offsets[i]);
        var poolTensor = Floats(pool, (int)total);

        var tensors = new List<Tensor>(count);
        for (int i = 0; i < count; i++)
        {
            bool alone = i % 7 == 3 && sizes[i] > 0;
            tensors.Add(alone ? Floats(data[i], sizes[i]) : poolTensor.SliceRows((int)offsets[i], sizes[i]));
        }
        return (tensors, values);
    }
}

[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class GlobalNormTests(BackendCase backendCase) : GlobalNormTestBase(backendCase)
{
    [Test]
    public void GlobalNormOverAModelsTensorsOfAssortedSizesAndOffsets()
    {
        SkipIfLarge(true, "a million elements in 339 tensors");
        var (tensors, values) = AssortedTensors(ModelTensorCount, 11);
        double expected = OR1.Tests.Reference.GlobalNormReference.Norm(values);
        float norm = Backend.GlobalNorm(tensors);
        Assert.That(norm, Is.EqualTo(expected).Within(Tol(1e-5) * expected));
    }

    [Test]
    public void GlobalNormIsBitIdenticalFromCallToCall()
    {
        SkipIfLarge(true, "a million elements in 339 tensors");
        var (tensors, _) = AssortedTensors(ModelTensorCount, 12);
        float first = Backend.GlobalNorm(tensors);
        float second = Backend.GlobalNorm(tensors);
        Assert.That(BitConverter.SingleToInt32Bits(second), Is.EqualTo(BitConverter.SingleToInt32Bits(first)), $"{first} then {second}");
    }

    [Test]
    public void GlobalNormOfOnlyEmptyTensorsIsZero()
    {
        var empty = Floats([1f], 1).SliceRows(0, 0);
        Assert.That(Backend.GlobalNorm([empty, empty]), Is.Zero);
        Assert.That(Backend.GlobalNorm([]), Is.Zero);
    }
}

/// <summary>The CUDA kernels' launch budget of the global norm: a fixed number of launches whatever the tensor count.</summary>
[TestFixtureSource(typeof(GlobalNormLaunchTests), nameof(KernelBackends))]
public sealed class GlobalNormLaunchTests(BackendCase backendCase) : GlobalNormTestBase(backendCase)
{
    /// <summary>The backends that run kernels/*.cu through the launch layer (and count what they ask of the device).</summary>
    public static IEnumerable<TestFixtureData> KernelBackends() =>
        BackendCases.All().Where(f => ((BackendCase)f.Arguments[0]!).Name is "Emu" or "EmuGpuShapes" or "Cuda");

    [Test]
    public void GlobalNormOverAModelsTensorsIsTwoLaunchesAndOneSynchronisation()
    {
        var (tensors, values) = AssortedTensors(ModelTensorCount, 13);
        var kernels = (KernelBackend)Backend;
        Backend.GlobalNorm(tensors); // the first call grows the scratch buffers
        var before = kernels.Counters;
        float norm = Backend.GlobalNorm(tensors);
        var cost = kernels.Counters - before;
        Assert.Multiple(() =>
        {
            Assert.That(cost.Launches, Is.LessThanOrEqualTo(2), cost.ToString());
            Assert.That(cost.Gemms, Is.Zero, cost.ToString());
            Assert.That(cost.Synchronizations, Is.EqualTo(1), cost.ToString());
            Assert.That(cost.DeviceToHostCopies, Is.EqualTo(1), cost.ToString());
            Assert.That(cost.Allocations, Is.Zero, cost.ToString());
            Assert.That(cost.Frees, Is.Zero, cost.ToString());
        });
        double expected = OR1.Tests.Reference.GlobalNormReference.Norm(values);
        Assert.That(norm, Is.EqualTo(expected).Within(Tol(1e-5) * expected));
    }
}

using OR1.Model;
using OR1.Native;

namespace OR1.Grpo.Training;

/// <summary>
/// What the host reads of a mini-batch, gathered on the device while its micro-batches run and downloaded in one
/// copy after the last of them: per micro-batch the policy-loss terms, per token the log-probs and entropies. The
/// ops write straight into views of one grow-only Float32 buffer, so the micro-batches run back to back without the
/// host waiting on any of them (one synchronisation per mini-batch instead of three per micro-batch) and nothing is
/// allocated once the buffer has grown to the largest mini-batch.
/// </summary>
/// <remarks>
/// Layout, per micro-batch k in order: the loss terms, then its log-probs, then its entropies, each region starting on
/// a multiple of <see cref="RegionAlignment"/> floats (the alignment of a fresh allocation, which kernels may rely on).
/// </remarks>
internal sealed class MiniBatchReadback(IBackend backend) : IDisposable
{
    private const int RegionAlignment = 64;
    private Tensor? _device;
    private float[] _host = [];
    private int[] _starts = [];
    private int[] _tokens = [];
    private int _count, _used;

    /// <summary>
    /// Lays the buffer out for <paramref name="microBatches"/> (growing it before any of their work is issued, so no
    /// view handed out earlier is still in use).
    /// </summary>
    public void Begin(IReadOnlyList<SequenceRange> microBatches)
    {
        _count = microBatches.Count;
        if (_starts.Length < _count)
        {
            _starts = new int[_count];
            _tokens = new int[_count];
        }
        long used = 0;
        for (int k = 0; k < _count; k++)
        {
            int n = microBatches[k].TokenCount;
            _starts[k] = (int)used;
            _tokens[k] = n;
            used += Aligned(PolicyLossTerms.Count) + 2 * Aligned(n);
        }
        if (used > int.MaxValue) throw new InvalidOperationException($"a mini-batch's read-back of {used} floats is too large; lower MicroBatchTokens or add mini-batches");
        _used = (int)used;
        if (_device is null || _device.ElementCount < _used)
        {
            _device?.Dispose();
            int capacity = (int)Math.Min(int.MaxValue, Math.Max(_used, _host.Length + (long)_host.Length / 2));
            _device = backend.Allocate(DType.Float32, new TensorShape(capacity), "mini-batch read-back");
            _host = new float[capacity];
        }
    }

    /// <summary>Float32 [<see cref="PolicyLossTerms.Count"/>]: where micro-batch <paramref name="k"/>'s policy loss writes its terms.</summary>
    public Tensor LossTerms(int k) => _device!.SliceRows(_starts[k], PolicyLossTerms.Count);

    /// <summary>Float32 [T_k]: micro-batch <paramref name="k"/>'s log-probs.</summary>
    public Tensor LogProbs(int k) => _device!.SliceRows(LogProbStart(k), _tokens[k]);

    /// <summary>Float32 [T_k]: micro-batch <paramref name="k"/>'s entropies.</summary>
    public Tensor Entropy(int k) => _device!.SliceRows(EntropyStart(k), _tokens[k]);

    /// <summary>Copies everything the micro-batches wrote to the host: the one synchronisation of the mini-batch's micro-batches.</summary>
    public void Download()
    {
        if (_used == 0) return;
        backend.Download<float>(_device!.SliceRows(0, _used), _host.AsSpan(0, _used));
    }

    /// <summary>The loss terms of micro-batch <paramref name="k"/>, after <see cref="Download"/>.</summary>
    public ReadOnlySpan<float> HostLossTerms(int k) => _host.AsSpan(_starts[k], PolicyLossTerms.Count);

    /// <summary>The host copy after <see cref="Download"/>, indexed by <see cref="LogProbStart"/> and <see cref="EntropyStart"/>.</summary>
    public float[] HostArray => _host;

    /// <summary>Where micro-batch <paramref name="k"/>'s log-probs start in <see cref="HostArray"/>.</summary>
    public int LogProbStart(int k) => _starts[k] + Aligned(PolicyLossTerms.Count);

    /// <summary>Where micro-batch <paramref name="k"/>'s entropies start in <see cref="HostArray"/>.</summary>
    public int EntropyStart(int k) => LogProbStart(k) + Aligned(_tokens[k]);

    private static int Aligned(int n) => (n + RegionAlignment - 1) / RegionAlignment * RegionAlignment;

    public void Dispose() => _device?.Dispose();
}

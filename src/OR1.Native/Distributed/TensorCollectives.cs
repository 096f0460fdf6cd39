namespace OR1.Native.Distributed;

/// <summary>
/// The collectives of <see cref="ICollectives"/> on fp32 tensors of one backend, wherever they live: host-visible tensors
/// (the Cpu backend, the emulator) are reduced in place through the world's host collectives; device tensors go through
/// NCCL on the backend's stream when a communicator is given, else they are staged through one host buffer (a copy down
/// and up per call: correct on every backend, and the path a GPU takes without NCCL).
/// </summary>
public sealed class TensorCollectives(IBackend backend, ICollectives world, NcclCollectives? nccl = null)
{
    private float[] _staging = [];

    /// <summary>How the tensors travel: "host (in place)", "nccl 2.x", or "staged through the host".</summary>
    public string Path { get; } = nccl is not null ? nccl.Description : HostVisible(backend) ? "host (in place)" : "staged through the host";

    private static bool HostVisible(IBackend backend)
    {
        using var probe = backend.Allocate(DType.Float32, new TensorShape(1), "probe");
        return probe.IsHostVisible;
    }

    /// <summary>buffer = the sum over the ranks (in place).</summary>
    public void AllReduceSum(Tensor buffer)
    {
        Check(buffer, nameof(buffer));
        if (world.WorldSize == 1) return;
        if (nccl is not null && !buffer.IsHostVisible)
        {
            nccl.AllReduceSum(buffer);
            return;
        }
        backend.Synchronize();
        if (buffer.IsHostVisible)
        {
            world.AllReduceSum(buffer.AsSpan<float>());
            return;
        }
        var host = Staging(buffer.ElementCount);
        backend.Download<float>(buffer, host);
        world.AllReduceSum(host);
        backend.Upload<float>(host, buffer);
    }

    /// <summary>On rank <paramref name="root"/>, output = the sum over the ranks of input; the others pass a null output.</summary>
    public void ReduceSum(Tensor input, Tensor? output, int root) =>
        Pair(input, output, (n, i, o) => n.ReduceSum(i, o, root), (i, o) => world.ReduceSum(i, o, root));

    /// <summary>output (WorldSize x n elements) = every rank's input (n elements), in rank order.</summary>
    public void AllGather(Tensor input, Tensor output) =>
        Pair(input, output, (n, i, o) => n.AllGather(i, o!), (i, o) => world.AllGather(i, o));

    private delegate void HostCollective(ReadOnlySpan<float> input, Span<float> output);

    /// <summary>
    /// A collective from one tensor into another (none: a rank that only sends): through NCCL, in place on the host, or
    /// staged through the host.
    /// </summary>
    private void Pair(Tensor input, Tensor? output, Action<NcclCollectives, Tensor, Tensor?> onDevice, HostCollective onHost)
    {
        Check(input, nameof(input));
        if (output is not null) Check(output, nameof(output));
        if (nccl is not null && !input.IsHostVisible && output is not { IsHostVisible: true })
        {
            onDevice(nccl, input, output);
            return;
        }
        backend.Synchronize();
        if (input.IsHostVisible && output is not { IsHostVisible: false })
        {
            onHost(input.AsSpan<float>(), output is null ? [] : output.AsSpan<float>());
            return;
        }
        int inputElements = (int)input.ElementCount, outputElements = (int)(output?.ElementCount ?? 0);
        var host = Staging(inputElements + outputElements);
        Span<float> from = host[..inputElements], to = host.Slice(inputElements, outputElements);
        backend.Download<float>(input, from);
        onHost(from, to);
        if (output is not null) backend.Upload<float>(to, output);
    }

    private void Check(Tensor t, string argument)
    {
        if (!ReferenceEquals(t.Backend, backend)) throw new ArgumentException($"{t.Describe()} belongs to another backend than these collectives' ({backend.Kind})", argument);
        if (t.DType != DType.Float32) throw new ArgumentException($"{t.Describe()}: the collectives take Float32 tensors", argument);
    }

    private Span<float> Staging(long elements)
    {
        if (_staging.Length < elements) _staging = new float[checked((int)elements)];
        return _staging.AsSpan(0, (int)elements);
    }
}

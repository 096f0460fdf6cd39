using System.Runtime.InteropServices;
using OR1.Native.Cuda;

namespace OR1.Native.Distributed;

/// <summary>
/// The GPU collectives over NCCL on the Cuda backend's stream (<see cref="NcclNative"/>): sums and gathers of fp32 or
/// bf16 tensors in device memory, queued like the backend's own work (nothing waits for the host). The communicator
/// spans the MPI world's ranks, one GPU each: rank 0 creates NCCL's unique id and the world broadcasts it.
/// <para>Counts are NCCL's size_t (<see cref="NcclNative"/>'s nuint): a whole flat gradient or slice of any length is one
/// call, where the host collectives count in Int32 (<see cref="TensorCollectives"/> cuts their calls).</para>
/// </summary>
public sealed unsafe class NcclCollectives : IDisposable
{
    private readonly CudaBackend _backend;
    private readonly nint _comm, _stream;

    private NcclCollectives(CudaBackend backend, nint comm, int rank, int world, string version)
    {
        _backend = backend;
        _comm = comm;
        _stream = backend.Stream;
        Rank = rank;
        WorldSize = world;
        Description = $"nccl {version}";
    }

    public int Rank { get; }
    public int WorldSize { get; }
    public string Description { get; }

    /// <summary>The NCCL version this process loads, or null with the reason when it cannot load one.</summary>
    public static string? Version(out string? missing)
    {
        try
        {
            int version;
            int code = NcclNative.GetVersion(&version);
            missing = code == NcclNative.Success ? null : $"ncclGetVersion failed ({code})";
            // NCCL 2.9+ encodes major * 10000 + minor * 100 + patch.
            return missing is null ? $"{version / 10000}.{version / 100 % 100}.{version % 100}" : null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            missing = "no NCCL library (libnccl.so.2 could not be loaded): install NCCL 2 (the GPU machines' CUDA images carry it)";
            return null;
        }
    }

    /// <summary>
    /// Joins the world's GPU communicator: every rank of <paramref name="world"/> must call this together, each with its
    /// own Cuda backend.
    /// </summary>
    /// <exception cref="NcclUnavailableException">NCCL cannot be loaded, or the communicator cannot be created; the message says which.</exception>
    public static NcclCollectives Create(CudaBackend backend, ICollectives world)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(world);
        string version = Version(out string? missing) ?? throw new NcclUnavailableException(missing!);
        var id = new NcclNative.UniqueId();
        if (world.Rank == 0) Check(NcclNative.GetUniqueId(&id), "ncclGetUniqueId", world.Rank);
        world.Broadcast(new Span<byte>(id.Bytes, NcclNative.UniqueIdBytes), root: 0);
        nint comm;
        Check(NcclNative.CommInitRank(&comm, world.WorldSize, id, world.Rank), "ncclCommInitRank", world.Rank);
        return new NcclCollectives(backend, comm, world.Rank, world.WorldSize, version);
    }

    private static void Check(int code, string call, int rank)
    {
        if (code == NcclNative.Success) return;
        string reason = Marshal.PtrToStringUTF8(NcclNative.GetErrorString(code)) ?? $"error {code}";
        throw new NcclUnavailableException($"rank {rank}: {call} failed: {reason}");
    }

    private static int TypeOf(Tensor t, string argument) => t.DType switch
    {
        DType.Float32 => NcclNative.Float32,
        DType.BFloat16 => NcclNative.BFloat16,
        _ => throw new ArgumentException($"NCCL collectives take Float32 or BFloat16 tensors; '{argument}' is {t.DType}", argument),
    };

    private void Own(Tensor t, string argument)
    {
        if (!ReferenceEquals(t.Backend, _backend))
            throw new ArgumentException($"'{argument}' belongs to another backend than this communicator's", argument);
    }

    /// <summary>Both tensors are this communicator's backend's, of one dtype.</summary>
    private void CheckPair(Tensor input, Tensor output)
    {
        Own(input, nameof(input));
        Own(output, nameof(output));
        if (input.DType != output.DType) throw new ArgumentException($"'output' is {output.DType}, 'input' {input.DType}: they must match", nameof(output));
    }

    /// <summary>buffer = the sum over the ranks (in place, on the backend's stream).</summary>
    public void AllReduceSum(Tensor buffer) => AllReduceSum(buffer, _stream);

    /// <summary>buffer = the sum over the ranks (in place), queued on <paramref name="stream"/>.</summary>
    internal void AllReduceSum(Tensor buffer, nint stream)
    {
        Own(buffer, nameof(buffer));
        Check(NcclNative.AllReduce(buffer.DevicePointer, buffer.DevicePointer, (nuint)buffer.ElementCount, TypeOf(buffer, nameof(buffer)), NcclNative.Sum, _comm, stream),
            "ncclAllReduce", Rank);
    }

    /// <summary>
    /// On rank <paramref name="root"/>, output = the sum over the ranks of input (same sizes); the other ranks pass a null
    /// output (nothing of theirs is written). On the backend's stream.
    /// </summary>
    public void ReduceSum(Tensor input, Tensor? output, int root) => ReduceSum(input, output, root, _stream);

    /// <summary><see cref="ReduceSum(Tensor, Tensor?, int)"/>, queued on <paramref name="stream"/>.</summary>
    internal void ReduceSum(Tensor input, Tensor? output, int root, nint stream)
    {
        Own(input, nameof(input));
        Collectives.CheckReduce(input.ElementCount, output?.ElementCount, root, WorldSize, Rank);
        if (output is not null) CheckPair(input, output);
        // NCCL reads the receive buffer on the root only; the others name their input there (never written).
        Check(NcclNative.Reduce(input.DevicePointer, (output ?? input).DevicePointer, (nuint)input.ElementCount, TypeOf(input, nameof(input)), NcclNative.Sum,
            root, _comm, stream), "ncclReduce", Rank);
    }

    /// <summary>output (n elements) = this rank's slice of the sum over the ranks of input (WorldSize x n elements).</summary>
    public void ReduceScatterSum(Tensor input, Tensor output)
    {
        CheckPair(input, output);
        Collectives.CheckScatter(input.ElementCount, output.ElementCount, WorldSize, Rank);
        Check(NcclNative.ReduceScatter(input.DevicePointer, output.DevicePointer, (nuint)output.ElementCount, TypeOf(input, nameof(input)), NcclNative.Sum, _comm, _stream),
            "ncclReduceScatter", Rank);
    }

    /// <summary>output (WorldSize x n elements) = every rank's input (n elements), in rank order.</summary>
    public void AllGather(Tensor input, Tensor output)
    {
        CheckPair(input, output);
        Collectives.CheckGather(input.ElementCount, output.ElementCount, WorldSize, Rank);
        Check(NcclNative.AllGather(input.DevicePointer, output.DevicePointer, (nuint)input.ElementCount, TypeOf(input, nameof(input)), _comm, _stream),
            "ncclAllGather", Rank);
    }

    public void Dispose() => NcclNative.CommDestroy(_comm);
}

/// <summary>NCCL is not there, or its communicator cannot be made: the message says which.</summary>
public sealed class NcclUnavailableException(string message) : Exception(message);

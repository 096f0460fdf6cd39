using System.Runtime.InteropServices;
using System.Text;

namespace OR1.Native.Distributed;

/// <summary>
/// The collectives over MPI_COMM_WORLD of Open MPI (<see cref="MpiNative"/>), on host buffers: the Cpu path's gradients,
/// and every rank's scalars. Open MPI's default error handler aborts the whole job when a call fails and mpirun stops
/// every rank when one dies, each with its message naming the rank; sizes that differ between ranks are found before
/// the call (an all-reduce of the count's maximum and minimum) and thrown on every rank as a <see cref="CollectiveException"/>.
/// <para>MPI starts at MPI_THREAD_SERIALIZED where the library grants it (Open MPI does): the gradients' buckets are then
/// reduced by a thread of their own during the backward. Calls from two threads at once are refused
/// (<see cref="OneCallerGate"/>).</para>
/// </summary>
public sealed unsafe class MpiCollectives : ICollectives
{
    private readonly nint _world, _float, _double, _byte, _sum, _max;
    private bool _disposed;
    // MPI_THREAD_SERIALIZED: one thread inside MPI at a time.
    private readonly OneCallerGate _gate;

    private MpiCollectives(nint library)
    {
        _gate = new OneCallerGate(() => Rank);
        nint Export(string name) => NativeLibrary.TryGetExport(library, name, out nint address)
            ? address
            : throw new CollectiveException($"libmpi does not export '{name}': an Open MPI library is needed (MPICH's ABI is not supported)");
        _world = Export("ompi_mpi_comm_world");
        _float = Export("ompi_mpi_float");
        _double = Export("ompi_mpi_double");
        _byte = Export("ompi_mpi_byte");
        _sum = Export("ompi_mpi_op_sum");
        _max = Export("ompi_mpi_op_max");
        int initialized, provided;
        Check(MpiNative.Initialized(&initialized), "MPI_Initialized");
        if (initialized == 0) Check(MpiNative.InitThread(null, null, MpiNative.ThreadSerialized, &provided), "MPI_Init_thread");
        else Check(MpiNative.QueryThread(&provided), "MPI_Query_thread");
        AnyThread = provided >= MpiNative.ThreadSerialized;
        int rank, size;
        Check(MpiNative.CommRank(_world, &rank), "MPI_Comm_rank");
        Check(MpiNative.CommSize(_world, &size), "MPI_Comm_size");
        Rank = rank;
        WorldSize = size;
        Description = $"mpi ({LibraryVersion()})";
    }

    /// <summary>Starts MPI (MPI_Init_thread asking for MPI_THREAD_SERIALIZED: any thread, one at a time).</summary>
    /// <exception cref="CollectiveException">libmpi cannot be loaded or is not Open MPI.</exception>
    public static MpiCollectives Start()
    {
        nint library = 0;
        foreach (var candidate in Cuda.CudaLibraries.MpiCandidates)
            if ((library = MpiNative.DlOpen(candidate, MpiNative.RtldNow | MpiNative.RtldGlobal)) != 0) break;
        if (library == 0)
            throw new CollectiveException($"started by an MPI launcher, but Open MPI's library could not be loaded (looked for {string.Join(", ", Cuda.CudaLibraries.MpiCandidates)}): " +
                                          "install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev)");
        return new MpiCollectives(library);
    }

    public int Rank { get; }
    public int WorldSize { get; }
    public string Description { get; }
    public bool AnyThread { get; }

    private static string LibraryVersion()
    {
        var text = stackalloc byte[8192];
        int length = 0;
        if (MpiNative.GetLibraryVersion(text, &length) != MpiNative.Success) return "unknown version";
        string version = Encoding.UTF8.GetString(text, Math.Max(0, length)).Trim('\0', ' ', '\n');
        int comma = version.IndexOf(',');
        return comma > 0 ? version[..comma] : version;
    }

    private void Check(int code, string call)
    {
        if (code == MpiNative.Success) return;
        var text = stackalloc byte[1024];
        int length = 0;
        string reason = MpiNative.ErrorString(code, text, &length) == MpiNative.Success ? Encoding.UTF8.GetString(text, length) : $"error {code}";
        throw new CollectiveException($"rank {Rank}: {call} failed: {reason}");
    }

    /// <summary>Throws on every rank when the ranks' counts differ (one small all-reduce before the collective).</summary>
    private void AgreeOnCount(long count, string what)
    {
        var bounds = stackalloc double[2] { count, -count };
        Check(MpiNative.Allreduce(MpiNative.InPlace, (nint)bounds, 2, _double, _max, _world), $"{what} (size check)");
        long most = (long)bounds[0], least = -(long)bounds[1];
        if (most != least)
            throw new CollectiveException($"rank {Rank}: {what} over buffers of different sizes: this rank has {count:N0} elements, " +
                                          $"the ranks have between {least:N0} and {most:N0}; every rank must pass the same size");
    }

    public void AllReduceSum(Span<float> buffer)
    {
        using var one = _gate.Enter("all-reduce");
        AgreeOnCount(buffer.Length, "all-reduce");
        fixed (float* p = buffer) Check(MpiNative.Allreduce(MpiNative.InPlace, (nint)p, buffer.Length, _float, _sum, _world), "MPI_Allreduce");
    }

    public void AllReduceSum(Span<double> values)
    {
        using var one = _gate.Enter("all-reduce of scalars");
        AgreeOnCount(values.Length, "all-reduce of scalars");
        fixed (double* p = values) Check(MpiNative.Allreduce(MpiNative.InPlace, (nint)p, values.Length, _double, _sum, _world), "MPI_Allreduce");
    }

    public void AllReduceMax(Span<double> values)
    {
        using var one = _gate.Enter("all-reduce (max) of scalars");
        AgreeOnCount(values.Length, "all-reduce (max) of scalars");
        fixed (double* p = values) Check(MpiNative.Allreduce(MpiNative.InPlace, (nint)p, values.Length, _double, _max, _world), "MPI_Allreduce");
    }

    public void ReduceScatterSum(ReadOnlySpan<float> input, Span<float> output)
    {
        using var one = _gate.Enter("reduce-scatter");
        Collectives.CheckScatter(input.Length, output.Length, WorldSize, Rank);
        AgreeOnCount(output.Length, "reduce-scatter");
        fixed (float* i = input)
        fixed (float* o = output)
            Check(MpiNative.ReduceScatterBlock((nint)i, (nint)o, output.Length, _float, _sum, _world), "MPI_Reduce_scatter_block");
    }

    public void AllGather(ReadOnlySpan<float> input, Span<float> output)
    {
        using var one = _gate.Enter("all-gather");
        Collectives.CheckGather(input.Length, output.Length, WorldSize, Rank);
        AgreeOnCount(input.Length, "all-gather");
        fixed (float* i = input)
        fixed (float* o = output)
            Check(MpiNative.Allgather((nint)i, input.Length, _float, (nint)o, input.Length, _float, _world), "MPI_Allgather");
    }

    public void Broadcast(Span<byte> buffer, int root)
    {
        using var one = _gate.Enter("broadcast");
        Collectives.CheckRoot(root, WorldSize);
        AgreeOnCount(buffer.Length, "broadcast");
        fixed (byte* p = buffer) Check(MpiNative.Bcast((nint)p, buffer.Length, _byte, root, _world), "MPI_Bcast");
    }

    public void ReduceSum(ReadOnlySpan<float> input, Span<float> output, int root)
    {
        using var one = _gate.Enter("reduce");
        Collectives.CheckReduce(input.Length, Rank == root || output.Length > 0 ? output.Length : null, root, WorldSize, Rank);
        AgreeOnCount(input.Length, "reduce");
        fixed (float* i = input)
        fixed (float* o = output)
            Check(MpiNative.Reduce((nint)i, (nint)o, input.Length, _float, _sum, root, _world), "MPI_Reduce");
    }

    public void Barrier()
    {
        using var one = _gate.Enter("barrier");
        Check(MpiNative.Barrier(_world), "MPI_Barrier");
    }

    public void Abort(int code)
    {
        _disposed = true;
        MpiNative.Abort(_world, code);
        // MPI_Abort does not return in Open MPI; should a library return, the process still must not go on.
        Environment.Exit(code);
    }

    /// <summary>Ends MPI for this process (MPI_Finalize): every rank must dispose its collectives before it exits.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        int finalized;
        if (MpiNative.Finalized(&finalized) == MpiNative.Success && finalized == 0) MpiNative.Finalize();
    }
}

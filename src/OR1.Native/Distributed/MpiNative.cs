using System.Runtime.InteropServices;
using OR1.Native.Cuda;

namespace OR1.Native.Distributed;

/// <summary>
/// Our binding of Open MPI's C API: the dozen calls data-parallel training makes. MPI.NET 1.4.0 (the NuGet package) was
/// tried first and does not work with Debian's Open MPI: its only build P/Invokes "msmpi.dll", Microsoft MPI, with that
/// library's integer handles (under mpirun -np 2 it fails with DllNotFoundException: msmpi.dll on every rank). These
/// LibraryImports need nothing but libmpi.so.40.
/// <para>Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are the addresses of exported globals
/// (ompi_mpi_comm_world, ...), read from the library with <see cref="NativeLibrary.GetExport"/>; MPI_IN_PLACE is
/// (void*)1. MPICH's ABI (integer handles) is not supported: <see cref="MpiCollectives"/> names the library it needs.</para>
/// </summary>
internal static partial class MpiNative
{
    static MpiNative() => CudaLibraries.Register();

    public const int Success = 0;
    /// <summary>MPI's thread levels: calls from the thread that started MPI only, or from any thread one at a time.</summary>
    public const int ThreadFunneled = 1, ThreadSerialized = 2;
    public static readonly nint InPlace = 1;

    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Initialized")] public static unsafe partial int Initialized(int* flag);
    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Finalized")] public static unsafe partial int Finalized(int* flag);
    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Init_thread")] public static unsafe partial int InitThread(int* argc, nint* argv, int required, int* provided);
    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Query_thread")] public static unsafe partial int QueryThread(int* provided);
    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Comm_rank")] public static unsafe partial int CommRank(nint comm, int* rank);
    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Comm_size")] public static unsafe partial int CommSize(nint comm, int* size);
    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Allreduce")] public static partial int Allreduce(nint send, nint receive, int count, nint type, nint op, nint comm);
    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Reduce")] public static partial int Reduce(nint send, nint receive, int count, nint type, nint op, int root, nint comm);
    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Reduce_scatter_block")] public static partial int ReduceScatterBlock(nint send, nint receive, int count, nint type, nint op, nint comm);
    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Allgather")] public static partial int Allgather(nint send, int sendCount, nint sendType, nint receive, int receiveCount, nint receiveType, nint comm);
    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Bcast")] public static partial int Bcast(nint buffer, int count, nint type, int root, nint comm);
    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Barrier")] public static partial int Barrier(nint comm);
    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Abort")] public static partial int Abort(nint comm, int code);
    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Finalize")] public static partial int Finalize();
    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Get_library_version")] public static unsafe partial int GetLibraryVersion(byte* version, int* length);
    [LibraryImport(CudaLibraries.Mpi, EntryPoint = "MPI_Error_string")] public static unsafe partial int ErrorString(int code, byte* text, int* length);

    /// <summary>dlopen with RTLD_GLOBAL: Open MPI's plugins resolve libmpi's symbols globally, which .NET's local load hides.</summary>
    [LibraryImport("libc.so.6", EntryPoint = "dlopen", StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint DlOpen(string file, int mode);

    public const int RtldNow = 2, RtldGlobal = 0x100;
}

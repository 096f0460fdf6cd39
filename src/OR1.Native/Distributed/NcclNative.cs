using System.Runtime.InteropServices;
using OR1.Native.Cuda;

namespace OR1.Native.Distributed;

/// <summary>
/// Our binding of NCCL 2 (libnccl.so.2): the communicator and the four collectives data-parallel training needs, on
/// our CUDA streams. ncclUniqueId is 128 opaque bytes that rank 0 creates and the MPI world broadcasts.
/// </summary>
internal static partial class NcclNative
{
    static NcclNative() => CudaLibraries.Register();

    public const int Success = 0;
    public const int UniqueIdBytes = 128;

    /// <summary>ncclDataType_t.</summary>
    public const int Float32 = 7, BFloat16 = 9;

    /// <summary>ncclRedOp_t.</summary>
    public const int Sum = 0;

    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclGetVersion")] public static unsafe partial int GetVersion(int* version);
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclGetUniqueId")] public static unsafe partial int GetUniqueId(byte* id);
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclCommInitRank")] public static unsafe partial int CommInitRank(nint* comm, int ranks, byte* id, int rank);
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclCommDestroy")] public static partial int CommDestroy(nint comm);
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclAllReduce")] public static partial int AllReduce(nint send, nint receive, nuint count, int type, int op, nint comm, nint stream);
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclReduce")] public static partial int Reduce(nint send, nint receive, nuint count, int type, int op, int root, nint comm, nint stream);
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclReduceScatter")] public static partial int ReduceScatter(nint send, nint receive, nuint receiveCount, int type, int op, nint comm, nint stream);
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclAllGather")] public static partial int AllGather(nint send, nint receive, nuint sendCount, int type, nint comm, nint stream);
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclGetErrorString")] public static partial nint GetErrorString(int result);
}

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
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclGetUniqueId")] public static unsafe partial int GetUniqueId(UniqueId* id);
    /// <summary>
    /// ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank): the id is passed by value, a
    /// 128-byte struct that the x86-64 and AArch64 ABIs pass in memory, so it takes no register and rank is the third
    /// integer argument. A pointer in its place would hand NCCL its address as the rank and stack garbage as the id.
    /// </summary>
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclCommInitRank")] public static unsafe partial int CommInitRank(nint* comm, int ranks, UniqueId id, int rank);
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclCommDestroy")] public static partial int CommDestroy(nint comm);
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclAllReduce")] public static partial int AllReduce(nint send, nint receive, nuint count, int type, int op, nint comm, nint stream);
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclReduce")] public static partial int Reduce(nint send, nint receive, nuint count, int type, int op, int root, nint comm, nint stream);
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclReduceScatter")] public static partial int ReduceScatter(nint send, nint receive, nuint receiveCount, int type, int op, nint comm, nint stream);
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclAllGather")] public static partial int AllGather(nint send, nint receive, nuint sendCount, int type, nint comm, nint stream);
    [LibraryImport(CudaLibraries.Nccl, EntryPoint = "ncclGetErrorString")] public static partial nint GetErrorString(int result);

    /// <summary>ncclUniqueId: <c>typedef struct { char internal[NCCL_UNIQUE_ID_BYTES]; } ncclUniqueId;</c> (128 bytes).</summary>
    [StructLayout(LayoutKind.Sequential, Size = UniqueIdBytes)]
    public unsafe struct UniqueId
    {
        public fixed byte Bytes[UniqueIdBytes];
    }
}

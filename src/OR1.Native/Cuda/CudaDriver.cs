using System.Runtime.InteropServices;

namespace OR1.Native.Cuda;

/// <summary>
/// Our bindings to the CUDA driver API (libcuda.so.1): only what the Cuda backend uses. Handles are
/// nint, device pointers ulong (CUdeviceptr), results int (CUresult; see <see cref="CudaErrors"/>).
/// The _v2 entry points are the ones cuda.h maps the plain names to.
/// </summary>
internal static unsafe partial class CudaDriver
{
    static CudaDriver() => CudaLibraries.Register();

    public const int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    public const int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
    public const int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
    public const uint CU_STREAM_NON_BLOCKING = 1;
    public const uint CU_EVENT_DEFAULT = 0;
    public const uint CU_EVENT_DISABLE_TIMING = 2;
    public const int CU_JIT_INFO_LOG_BUFFER = 3;
    public const int CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4;
    public const int CU_JIT_ERROR_LOG_BUFFER = 5;
    public const int CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6;

    [LibraryImport(CudaLibraries.Driver)] public static partial int cuInit(uint flags);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuDriverGetVersion(out int version);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuGetErrorName(int error, out nint name);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuDeviceGetCount(out int count);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport(CudaLibraries.Driver, EntryPoint = "cuDeviceTotalMem_v2")] public static partial int cuDeviceTotalMem(out nuint bytes, int device);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuDevicePrimaryCtxRetain(out nint context, int device);
    [LibraryImport(CudaLibraries.Driver, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] public static partial int cuDevicePrimaryCtxRelease(int device);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuCtxSetCurrent(nint context);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuCtxGetCurrent(out nint context);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuCtxSynchronize();
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuModuleLoadData(out nint module, void* image);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuModuleLoadDataEx(out nint module, void* image, uint numOptions, int* options, void** optionValues);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuModuleUnload(nint module);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuModuleGetFunction(out nint function, nint module, byte* name);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuFuncSetAttribute(nint function, int attribute, int value);
    [LibraryImport(CudaLibraries.Driver, EntryPoint = "cuMemAlloc_v2")] public static partial int cuMemAlloc(out ulong pointer, nuint bytes);
    [LibraryImport(CudaLibraries.Driver, EntryPoint = "cuMemFree_v2")] public static partial int cuMemFree(ulong pointer);
    [LibraryImport(CudaLibraries.Driver, EntryPoint = "cuMemAllocHost_v2")] public static partial int cuMemAllocHost(out nint pointer, nuint bytes);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuMemFreeHost(nint pointer);
    [LibraryImport(CudaLibraries.Driver, EntryPoint = "cuMemGetInfo_v2")] public static partial int cuMemGetInfo(out nuint free, out nuint total);
    [LibraryImport(CudaLibraries.Driver, EntryPoint = "cuMemcpyHtoDAsync_v2")] public static partial int cuMemcpyHtoDAsync(ulong destination, void* source, nuint bytes, nint stream);
    [LibraryImport(CudaLibraries.Driver, EntryPoint = "cuMemcpyDtoHAsync_v2")] public static partial int cuMemcpyDtoHAsync(void* destination, ulong source, nuint bytes, nint stream);
    [LibraryImport(CudaLibraries.Driver, EntryPoint = "cuMemcpyDtoDAsync_v2")] public static partial int cuMemcpyDtoDAsync(ulong destination, ulong source, nuint bytes, nint stream);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuMemsetD8Async(ulong destination, byte value, nuint count, nint stream);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuMemsetD32Async(ulong destination, uint value, nuint count, nint stream);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuStreamCreate(out nint stream, uint flags);
    [LibraryImport(CudaLibraries.Driver, EntryPoint = "cuStreamDestroy_v2")] public static partial int cuStreamDestroy(nint stream);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuStreamSynchronize(nint stream);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuEventCreate(out nint evt, uint flags);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuEventRecord(nint evt, nint stream);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuEventSynchronize(nint evt);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuStreamWaitEvent(nint stream, nint evt, uint flags);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuEventElapsedTime(out float milliseconds, nint start, nint end);
    [LibraryImport(CudaLibraries.Driver, EntryPoint = "cuEventDestroy_v2")] public static partial int cuEventDestroy(nint evt);

    // Graphs (CUDA 11.4+ for cuGraphInstantiateWithFlags; the check's drivers are CUDA 12-13).
    public const int CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1;
    [LibraryImport(CudaLibraries.Driver, EntryPoint = "cuStreamBeginCapture_v2")] public static partial int cuStreamBeginCapture(nint stream, int mode);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuStreamEndCapture(nint stream, out nint graph);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuGraphInstantiateWithFlags(out nint graphExec, nint graph, ulong flags);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuGraphLaunch(nint graphExec, nint stream);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuGraphGetNodes(nint graph, nint* nodes, ref nuint count);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuGraphExecDestroy(nint graphExec);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuGraphDestroy(nint graph);

    [LibraryImport(CudaLibraries.Driver)]
    public static partial int cuLaunchKernel(nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedBytes, nint stream, void** kernelParams, void** extra);

    /// <summary>The driver's own name for a code when it can give one, else our table's.</summary>
    public static string ErrorName(int code)
    {
        try
        {
            if (cuGetErrorName(code, out nint name) == 0 && name != 0) return Marshal.PtrToStringUTF8(name) ?? CudaErrors.DriverName(code);
        }
        catch (DllNotFoundException)
        {
        }
        return CudaErrors.DriverName(code);
    }
}

/// <summary>Our bindings to NVRTC (libnvrtc.so.*), the run-time compiler of CUDA C++ to PTX.</summary>
internal static unsafe partial class Nvrtc
{
    static Nvrtc() => CudaLibraries.Register();

    [LibraryImport(CudaLibraries.Nvrtc)] public static partial int nvrtcVersion(out int major, out int minor);
    [LibraryImport(CudaLibraries.Nvrtc)] public static partial int nvrtcCreateProgram(out nint program, byte* source, byte* name, int numHeaders, byte** headers, byte** includeNames);
    [LibraryImport(CudaLibraries.Nvrtc)] public static partial int nvrtcDestroyProgram(ref nint program);
    [LibraryImport(CudaLibraries.Nvrtc)] public static partial int nvrtcCompileProgram(nint program, int numOptions, byte** options);
    [LibraryImport(CudaLibraries.Nvrtc)] public static partial int nvrtcGetPTXSize(nint program, out nuint size);
    [LibraryImport(CudaLibraries.Nvrtc)] public static partial int nvrtcGetPTX(nint program, byte* ptx);
    [LibraryImport(CudaLibraries.Nvrtc)] public static partial int nvrtcGetProgramLogSize(nint program, out nuint size);
    [LibraryImport(CudaLibraries.Nvrtc)] public static partial int nvrtcGetProgramLog(nint program, byte* log);
}

/// <summary>
/// Our bindings to cuBLAS (libcublas.so.*): handle, stream, the fp32 GEMMs and cublasGemmEx for bf16 (and TF32).
/// cuBLAS is column-major; <see cref="CublasGemm"/> maps the row-major GEMMs of the op contract onto it.
/// </summary>
internal static unsafe partial class Cublas
{
    static Cublas() => CudaLibraries.Register();

    public const int CUBLAS_OP_N = 0;
    public const int CUBLAS_OP_T = 1;

    // cudaDataType_t, cublasComputeType_t and cublasGemmAlgo_t values (library_types.h, cublas_api.h).
    public const int CUDA_R_32F = 0;
    public const int CUDA_R_16BF = 14;
    public const int CUBLAS_COMPUTE_32F = 68;
    public const int CUBLAS_COMPUTE_32F_FAST_TF32 = 77;
    public const int CUBLAS_GEMM_DEFAULT = -1;

    [LibraryImport(CudaLibraries.Cublas, EntryPoint = "cublasCreate_v2")] public static partial int cublasCreate(out nint handle);
    [LibraryImport(CudaLibraries.Cublas, EntryPoint = "cublasDestroy_v2")] public static partial int cublasDestroy(nint handle);
    [LibraryImport(CudaLibraries.Cublas, EntryPoint = "cublasSetStream_v2")] public static partial int cublasSetStream(nint handle, nint stream);
    [LibraryImport(CudaLibraries.Cublas, EntryPoint = "cublasSetWorkspace_v2")] public static partial int cublasSetWorkspace(nint handle, nint workspace, nuint bytes);
    [LibraryImport(CudaLibraries.Cublas, EntryPoint = "cublasGetVersion_v2")] public static partial int cublasGetVersion(nint handle, out int version);
    [LibraryImport(CudaLibraries.Cublas)] public static partial int cublasGetProperty(int type, out int value);

    // libraryPropertyType (library_types.h): cublasGetProperty answers without a handle, so without a GPU.
    public const int MAJOR_VERSION = 0;
    public const int MINOR_VERSION = 1;
    public const int PATCH_LEVEL = 2;

    [LibraryImport(CudaLibraries.Cublas, EntryPoint = "cublasSgemm_v2")]
    public static partial int cublasSgemm(nint handle, int transA, int transB, int m, int n, int k, float* alpha,
        ulong a, int lda, ulong b, int ldb, float* beta, ulong c, int ldc);

    [LibraryImport(CudaLibraries.Cublas)]
    public static partial int cublasSgemmStridedBatched(nint handle, int transA, int transB, int m, int n, int k, float* alpha,
        ulong a, int lda, long strideA, ulong b, int ldb, long strideB, float* beta, ulong c, int ldc, long strideC, int batchCount);

    [LibraryImport(CudaLibraries.Cublas)]
    public static partial int cublasGemmEx(nint handle, int transA, int transB, int m, int n, int k, void* alpha,
        ulong a, int aType, int lda, ulong b, int bType, int ldb, void* beta, ulong c, int cType, int ldc, int computeType, int algo);

    [LibraryImport(CudaLibraries.Cublas)]
    public static partial int cublasGemmStridedBatchedEx(nint handle, int transA, int transB, int m, int n, int k, void* alpha,
        ulong a, int aType, int lda, long strideA, ulong b, int bType, int ldb, long strideB, void* beta, ulong c, int cType, int ldc,
        long strideC, int batchCount, int computeType, int algo);

    /// <summary>The cudaDataType_t of a storage dtype.</summary>
    public static int DataType(DType dtype) => dtype switch
    {
        DType.Float32 => CUDA_R_32F,
        DType.BFloat16 => CUDA_R_16BF,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "cuBLAS GEMMs here take Float32 or BFloat16"),
    };
}

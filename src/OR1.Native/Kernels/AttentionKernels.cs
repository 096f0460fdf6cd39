namespace OR1.Native.Kernels;

/// <summary>
/// Which attention kernels a call runs and their launch shapes, mirroring the kernel traits of kernels/attention.cu
/// (tensor cores) and kernels/attention_simt.cu (CUDA cores). bf16 storage with a head dim that is a multiple of 8 (16-byte
/// rows for cp.async) and 16-byte aligned tensors runs on the tensor cores, in the kernels instantiated for the next
/// padded head dim; fp32 storage (exact to fp32, which TF32 math would not be) and any other bf16 case run on the CUDA cores.
/// </summary>
internal readonly record struct AttentionKernels(bool TensorCores, int PaddedHeadDim)
{
    /// <summary>Padded head dims the tensor-core kernels are instantiated for (OR1_ATTENTION_TC_* in attention.cu).</summary>
    public static ReadOnlySpan<int> PaddedHeadDims => [32, 64, 96, 128, 192, 256];

    /// <summary>Threads per block of every attention kernel (ATT_TC_THREADS; the SIMT kernels use 128 too).</summary>
    public const int Threads = 128;

    /// <summary>Query rows per forward/dQ block and key rows per dK/dV block (16 per warp, 4 warps).</summary>
    public const int TensorCoreBlockRows = 64;

    /// <summary>Rows per SIMT forward/dQ block (ATT_BQ) and per SIMT dK/dV block (ATT_BKV).</summary>
    public const int SimtQueryTile = 16, SimtKeyTile = 32, SimtKvTile = 16;

    public static AttentionKernels For(DType storage, int headDim, params ReadOnlySpan<Tensor> tensors)
    {
        if (storage != DType.BFloat16 || headDim % 8 != 0 || headDim > 256) return new(false, headDim);
        foreach (var t in tensors)
            if (t.DevicePointer % 16 != 0) return new(false, headDim);
        foreach (int padded in PaddedHeadDims)
            if (padded >= headDim) return new(true, padded);
        return new(false, headDim);
    }

    private int KeyTileRows => PaddedHeadDim <= 128 ? 64 : 32;

    /// <summary>Bytes of one bf16 shared tile of <paramref name="rows"/> rows (SharedTile: a row stride of Dp + 8).</summary>
    private int TileBytes(int rows) => rows * (PaddedHeadDim + 8) * 2;

    public string Forward(DType storage) =>
        TensorCores ? $"attention_forward_bf16_d{PaddedHeadDim}" : Simt("attention_forward_simt", storage);

    public string BackwardDq(DType storage) =>
        TensorCores ? $"attention_backward_dq_bf16_d{PaddedHeadDim}" : Simt("attention_backward_dq_simt", storage);

    /// <summary>The dK/dV kernels: one (both sums) up to Dp 128, then the dV and the dK pass above it; the SIMT one otherwise.</summary>
    public (string First, string? Second) BackwardKv(DType storage) =>
        !TensorCores ? (Simt("attention_backward_dkv_simt", storage), null)
        : PaddedHeadDim <= 128 ? ($"attention_backward_dkv_bf16_d{PaddedHeadDim}", null)
        : ($"attention_backward_dv_bf16_d{PaddedHeadDim}", $"attention_backward_dk_bf16_d{PaddedHeadDim}");

    /// <summary>Query rows per forward and dQ block.</summary>
    public int QueryRows => TensorCores ? TensorCoreBlockRows : SimtQueryTile;

    /// <summary>Key rows per dK/dV block.</summary>
    public int KeyRows => TensorCores ? TensorCoreBlockRows : SimtKvTile;

    /// <summary>Forward: Q, and K and V double-buffered (kForwardShared); SIMT: K, V and Q tiles in fp32.</summary>
    public int ForwardSharedBytes(int headDim) => TensorCores
        ? TileBytes(TensorCoreBlockRows) + 4 * TileBytes(KeyTileRows)
        : (2 * SimtKeyTile * (headDim + 1) + SimtQueryTile * headDim + 4 * 32) * sizeof(float);

    /// <summary>dQ: Q and dO, K and V double-buffered (kDqShared).</summary>
    public int DqSharedBytes(int headDim) => TensorCores
        ? 2 * TileBytes(TensorCoreBlockRows) + 4 * TileBytes(KeyTileRows)
        : (2 * SimtKeyTile * (headDim + 1) + 2 * SimtQueryTile * headDim + 4 * 32) * sizeof(float);

    /// <summary>dK/dV: the block's K and V, Q and dO double-buffered in 32-row tiles (kDkvShared).</summary>
    public int DkvSharedBytes(int headDim) => TensorCores
        ? 2 * TileBytes(TensorCoreBlockRows) + 4 * TileBytes(32)
        : (2 * SimtKvTile * (headDim + 1) + 2 * 32 * (headDim + 1) + 2 * 32 + 2 * 4 * 32) * sizeof(float);

    private static string Simt(string name, DType storage) => storage == DType.BFloat16 ? name + "_bf16" : name + "_f32";
}

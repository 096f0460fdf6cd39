using ILGPU;
using ILGPU.Runtime;

namespace OR1.Native.Ilgpu;

/// <summary>
/// Memory of an ILGPU accelerator: one <see cref="MemoryBuffer1D{T, TStride}"/> of bytes, zero-filled,
/// that tensors view at byte offsets and kernels see as typed <see cref="ArrayView{T}"/>s. The host
/// never reads it directly (<see cref="HostPointer"/> is 0 even on the CPU accelerator): every transfer
/// goes through the contract's Upload and Download, exactly as it must for CUDA memory.
/// </summary>
internal sealed class IlgpuBuffer : DeviceBuffer
{
    /// <summary>Allocations are padded to this many bytes so that zero-sized tensors still get a valid view.</summary>
    private const long MinimumBytes = 16;

    private MemoryBuffer1D<byte, Stride1D.Dense>? _memory;

    public IlgpuBuffer(IlgpuBackend backend, Accelerator accelerator, long sizeInBytes) : base(backend, sizeInBytes)
    {
        // Rounded up to whole 4-byte words so that a Float32/Int32 view of the full buffer is always valid.
        long bytes = Math.Max(MinimumBytes, (sizeInBytes + 3) & ~3L);
        _memory = accelerator.Allocate1D<byte>(bytes);
        _memory.MemSetToZero();
    }

    /// <summary>The whole allocation as bytes.</summary>
    public ArrayView<byte> Bytes => (_memory ?? throw new ObjectDisposedException(nameof(IlgpuBuffer))).View;

    /// <inheritdoc />
    public override nint HostPointer => 0;

    /// <inheritdoc />
    public override nint DevicePointer => _memory?.NativePtr ?? 0;

    /// <inheritdoc />
    protected override void Release()
    {
        _memory?.Dispose();
        _memory = null;
    }
}

using System.Runtime.InteropServices;

namespace OR1.Native.Cpu;

/// <summary>
/// Native host memory, 64-byte aligned so that Vector256/Vector512 loads of a row start on a cache
/// line, and outside the GC heap so kernels can keep raw pointers without pinning.
/// </summary>
internal sealed unsafe class CpuBuffer : DeviceBuffer
{
    private void* _memory;

    public CpuBuffer(IBackend backend, long sizeInBytes) : base(backend, sizeInBytes)
    {
        // One extra cache line keeps zero-byte buffers valid and lets kernels read a vector past the last row end safely.
        nuint bytes = (nuint)sizeInBytes + 64;
        _memory = NativeMemory.AlignedAlloc(bytes, 64);
        if (_memory is null) throw new OutOfMemoryException($"could not allocate {sizeInBytes} bytes of host memory");
        NativeMemory.Clear(_memory, bytes);
        GC.AddMemoryPressure(Math.Max(1, sizeInBytes));
    }

    public override nint HostPointer => (nint)_memory;

    public override nint DevicePointer => (nint)_memory;

    protected override void Release()
    {
        NativeMemory.AlignedFree(_memory);
        GC.RemoveMemoryPressure(Math.Max(1, SizeInBytes));
        _memory = null;
    }

    ~CpuBuffer()
    {
        if (_memory is not null) NativeMemory.AlignedFree(_memory);
    }
}

using System.Buffers;

namespace OR1.Native.Cpu;

/// <summary>
/// Temporary float storage for a kernel's partial results, rented from the shared ArrayPool so that a
/// steady-state training loop does not allocate; pinned for the kernel's lifetime so workers can use a
/// raw pointer.
/// </summary>
internal unsafe ref struct ScratchFloats
{
    private readonly float[] _array;
    private System.Runtime.InteropServices.GCHandle _handle;

    public ScratchFloats(int length)
    {
        _array = ArrayPool<float>.Shared.Rent(Math.Max(1, length));
        _handle = System.Runtime.InteropServices.GCHandle.Alloc(_array, System.Runtime.InteropServices.GCHandleType.Pinned);
        Pointer = (float*)_handle.AddrOfPinnedObject();
        Length = length;
    }

    public float* Pointer { get; }

    public int Length { get; }

    public readonly Span<float> Span => new(Pointer, Length);

    public void Dispose()
    {
        _handle.Free();
        ArrayPool<float>.Shared.Return(_array);
    }
}

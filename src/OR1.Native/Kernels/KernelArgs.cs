using System.Diagnostics.CodeAnalysis;

namespace OR1.Native.Kernels;

/// <summary>
/// The argument list of one kernel launch, in the form cuLaunchKernel and or1_emu_launch take: each
/// value in its own 8-byte slot, and <see cref="Sizes"/> recording how many bytes of the slot the
/// parameter uses (the Emu runtime checks them against the kernel's signature). Lives on the stack;
/// chain the adders: <c>var a = new KernelArgs(); rt.Launch(k, g, b, 0, ref a.Ptr(x).Int(n));</c>.
/// </summary>
internal unsafe struct KernelArgs
{
    public const int Capacity = 24;

    private fixed ulong _values[Capacity];
    private fixed int _sizes[Capacity];

    /// <summary>Number of arguments added.</summary>
    public int Count { get; private set; }

    /// <summary>A device (or emulated host) pointer; 0 passes a null pointer.</summary>
    [UnscopedRef]
    public ref KernelArgs Ptr(nint pointer) => ref Add((ulong)pointer, sizeof(nint));

    [UnscopedRef]
    public ref KernelArgs Int(int value) => ref Add((uint)value, sizeof(int));

    [UnscopedRef]
    public ref KernelArgs UInt(uint value) => ref Add(value, sizeof(uint));

    [UnscopedRef]
    public ref KernelArgs Long(long value) => ref Add((ulong)value, sizeof(long));

    [UnscopedRef]
    public ref KernelArgs ULong(ulong value) => ref Add(value, sizeof(ulong));

    [UnscopedRef]
    public ref KernelArgs Float(float value) => ref Add(BitConverter.SingleToUInt32Bits(value), sizeof(float));

    [UnscopedRef]
    public ref KernelArgs Double(double value) => ref Add(BitConverter.DoubleToUInt64Bits(value), sizeof(double));

    [UnscopedRef]
    private ref KernelArgs Add(ulong bits, int size)
    {
        if (Count == Capacity) throw new InvalidOperationException($"a kernel launch takes at most {Capacity} arguments");
        _values[Count] = bits; // little-endian: a 4-byte parameter reads the low half of its slot
        _sizes[Count] = size;
        Count++;
        return ref this;
    }

    /// <summary>Fills <paramref name="pointers"/> with the address of each argument value (the void** of a launch).</summary>
    /// <remarks>The struct must not move while the pointers are in use: call on a stack local.</remarks>
    public void GetPointers(void** pointers)
    {
        fixed (ulong* values = _values)
        {
            for (int i = 0; i < Count; i++) pointers[i] = values + i;
        }
    }

    /// <summary>The byte size of each argument.</summary>
    public int* Sizes
    {
        get
        {
            fixed (int* sizes = _sizes) return sizes;
        }
    }
}

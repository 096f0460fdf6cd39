namespace OR1.Native;

/// <summary>
/// A block of memory owned by one backend. Host-visible buffers (Cpu, Emu) expose
/// <see cref="HostPointer"/>; device buffers (Cuda) expose only <see cref="DevicePointer"/> and are
/// read through the backend's explicit Download.
/// </summary>
public abstract class DeviceBuffer : IDisposable
{
    /// <summary>Creates the bookkeeping for a buffer of <paramref name="sizeInBytes"/> bytes.</summary>
    protected DeviceBuffer(IBackend backend, long sizeInBytes)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentOutOfRangeException.ThrowIfNegative(sizeInBytes);
        Backend = backend;
        SizeInBytes = sizeInBytes;
    }

    /// <summary>The backend that allocated this buffer; only its ops may use it.</summary>
    public IBackend Backend { get; }

    /// <summary>Capacity in bytes.</summary>
    public long SizeInBytes { get; }

    /// <summary>Address readable by host code, or zero when the memory lives on a device.</summary>
    public abstract nint HostPointer { get; }

    /// <summary>Address for the backend's kernels (equal to <see cref="HostPointer"/> on host backends).</summary>
    public abstract nint DevicePointer { get; }

    /// <summary>True once the memory has been released.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>Releases the memory; views of it become unusable.</summary>
    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        Release();
        Released?.Invoke(SizeInBytes);
        GC.SuppressFinalize(this);
    }

    /// <summary>Told the buffer's size once it is released (the backend's count of allocated bytes).</summary>
    internal Action<long>? Released { get; set; }

    /// <summary>Frees the backend memory exactly once.</summary>
    protected abstract void Release();
}

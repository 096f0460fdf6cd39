namespace OR1.Native.Kernels;

/// <summary>
/// A kernel failed to launch or to run (a CUDA error, an emulator trap or deadlock). Argument errors
/// are never reported this way: they are <see cref="ArgumentException"/>s raised before any launch.
/// </summary>
public sealed class KernelException : InvalidOperationException
{
    /// <summary>Creates the exception for <paramref name="kernel"/> on <paramref name="backend"/>.</summary>
    public KernelException(BackendKind backend, string kernel, string message, Exception? inner = null)
        : base($"{backend} kernel '{kernel}' failed: {message}", inner)
    {
        Backend = backend;
        Kernel = kernel;
    }

    /// <summary>The backend the kernel ran on.</summary>
    public BackendKind Backend { get; }

    /// <summary>The kernel's name (as in kernels/*.cu), or the runtime call that failed.</summary>
    public string Kernel { get; }
}

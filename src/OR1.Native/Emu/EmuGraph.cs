using OR1.Native.Kernels;

namespace OR1.Native.Emu;

/// <summary>
/// The emulator's CUDA graph: the launches and copies a capture recorded (arguments copied by value), replayed in order
/// on the emulator, as cuGraphLaunch replays an instantiated graph on a stream.
/// </summary>
internal sealed class EmuGraph(EmuRuntime runtime, List<EmuGraph.Node> nodes) : IDeviceGraph
{
    /// <summary>A kernel launch (Kernel set) or a device copy of Bytes from Source to Destination.</summary>
    internal readonly record struct Node(string? Kernel, Dim3 Grid, Dim3 Block, int SharedBytes, KernelArgs Args, nint Source, nint Destination, long Bytes);

    private bool _disposed;

    public int Nodes => nodes.Count;

    public bool IsCurrent => !_disposed;

    public void Replay()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (runtime.Capturing) throw new KernelException(BackendKind.Emu, "cuGraphLaunch", "a graph cannot be replayed while the stream is being captured");
        foreach (var node in nodes) runtime.Run(node);
    }

    public void Dispose() => _disposed = true;
}

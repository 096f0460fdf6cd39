namespace OR1.Native;

/// <summary>
/// Device work recorded once and replayed with one launch (<see cref="IBackend.CaptureGraph"/>): on the Cuda backend a
/// CUDA graph (cuStreamBeginCapture ... cuGraphInstantiate, replayed by cuGraphLaunch), on the emulator the same launches
/// recorded and run again in order. A replay reads and writes the very buffers the capture did, with the arguments it
/// had: to run on new data, write it into those buffers first.
/// </summary>
public interface IDeviceGraph : IDisposable
{
    /// <summary>Operations recorded (kernel launches, GEMMs, device copies).</summary>
    int Nodes { get; }

    /// <summary>
    /// False once memory the capture used behind the ops' backs (a launcher's scratch) has moved, after a larger op
    /// reallocated it: <see cref="Replay"/> then throws, and the work must be captured again.
    /// </summary>
    bool IsCurrent { get; }

    /// <summary>Queues the recorded work on the backend's stream; returns without waiting.</summary>
    void Replay();
}

namespace OR1.Native;

/// <summary>
/// A backend cannot start on this machine: no GPU, no driver, or a missing native library. The message
/// names what is missing and how to get it.
/// </summary>
public sealed class BackendUnavailableException : Exception
{
    /// <summary>Creates the exception for <paramref name="backend"/> with the reason it cannot start.</summary>
    public BackendUnavailableException(BackendKind backend, string reason, Exception? inner = null)
        : base($"{backend} backend unavailable: {reason}", inner)
    {
        Backend = backend;
    }

    /// <summary>Which backend failed to start.</summary>
    public BackendKind Backend { get; }
}

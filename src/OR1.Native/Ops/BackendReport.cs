namespace OR1.Native;

/// <summary>One backend of <see cref="Backends.Inspect"/>: its facts and op check when it starts, or why it does not.</summary>
/// <param name="Name">The name <see cref="Backends.Create"/> takes (cpu, cuda, ilgpu-cuda, emu, ilgpu-cpu).</param>
/// <param name="Facts">What it runs on; null when it does not start.</param>
/// <param name="Reason">Why it does not start (the <see cref="BackendUnavailableException"/>'s message, or the type and
/// message of whatever else its start threw); null when it starts.</param>
/// <param name="Check">Its <see cref="BackendCheck"/>; null when it does not start.</param>
public sealed record BackendReport(string Name, BackendFacts? Facts, string? Reason, BackendCheckResult? Check)
{
    /// <summary>Whether the backend started here.</summary>
    public bool Starts => Facts is not null;
}

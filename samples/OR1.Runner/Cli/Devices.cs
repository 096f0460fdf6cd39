using System.CommandLine;
using OR1.Native;

namespace OR1.Runner.Cli;

/// <summary>The --device option and the backend it selects.</summary>
public static class Devices
{
    public static Option<string> CreateOption() => new("--device")
    {
        Description = "Backend to run on: " + Backends.Help,
        DefaultValueFactory = _ => "cpu",
    };

    /// <summary>Throws the same <see cref="CliException"/> as <see cref="Create"/> when <paramref name="device"/> names no backend of this build.</summary>
    public static void RequireKnown(string device)
    {
        if (!Backends.Names.Contains(device, StringComparer.OrdinalIgnoreCase))
            throw new CliException($"--device '{device}' is not a backend this build has; available: {string.Join(", ", Backends.Names)}");
    }

    public static IBackend Create(string device)
    {
        try
        {
            return Backends.Create(device);
        }
        // Only the factory's own rejection of the name: a backend's constructor may throw other ArgumentExceptions.
        catch (ArgumentException e) when (e.ParamName == "name")
        {
            throw new CliException($"--device '{device}' is not a backend this build has; available: {string.Join(", ", Backends.Names)}", e);
        }
        catch (BackendUnavailableException e)
        {
            throw new CliException($"--device '{device}': {e.Message}", e);
        }
    }
}

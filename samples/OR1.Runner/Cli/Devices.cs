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

    public static IBackend Create(string device)
    {
        try
        {
            return Backends.Create(device);
        }
        catch (ArgumentException e)
        {
            throw new CliException($"--device '{device}' is not a backend this build has; available: {string.Join(", ", Backends.Names)}", e);
        }
        catch (BackendUnavailableException e)
        {
            throw new CliException($"--device '{device}': {e.Message}", e);
        }
    }
}

using System.CommandLine;
using OR1.Native;
using OR1.Native.Cpu;

namespace OR1.Runner.Cli;

/// <summary>The --device option and the backend it selects.</summary>
public static class Devices
{
    public static readonly string[] Known = ["cpu"];

    public static Option<string> CreateOption() => new("--device")
    {
        Description = "Backend to run on: " + string.Join(", ", Known),
        DefaultValueFactory = _ => "cpu",
    };

    public static IBackend Create(string device) => device.ToLowerInvariant() switch
    {
        "cpu" => new CpuBackend(),
        _ => throw new CliException($"--device '{device}' is not a backend this build has; available: {string.Join(", ", Known)}"),
    };
}

using System.CommandLine;
using OR1.Native;
using OR1.Runner.Cli;

namespace OR1.Runner.Commands;

/// <summary><c>or1 info</c>: the backend this machine runs and a visible kernel check.</summary>
public static class InfoCommand
{
    public static Command Create()
    {
        var device = Devices.CreateOption();
        var command = new Command("info", "Show the backend and run a small kernel check") { device };
        command.SetAction(r => Run(r.GetValue(device)!));
        return command;
    }

    public static int Run(string device)
    {
        using var backend = Devices.Create(device);
        Console.WriteLine($"Backend: {backend.Description}");
        using var rewards = backend.Allocate(DType.Float32, new TensorShape(4), "rewards");
        using var advantages = backend.Allocate(DType.Float32, new TensorShape(4), "advantages");
        using var groups = Segments.FromLengths(backend, [4]);
        backend.Upload<float>([1f, 0f, 1f, 1f], rewards);
        backend.GrpoAdvantages(rewards, groups, 1e-6f, advantages);
        var result = new float[4];
        backend.Download<float>(advantages, result);
        Console.WriteLine($"GRPO advantages of rewards [1, 0, 1, 1]: [{string.Join(", ", result.Select(a => a.ToString("F4", System.Globalization.CultureInfo.InvariantCulture)))}]");
        return 0;
    }
}

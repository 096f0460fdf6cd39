using System.CommandLine;
using OR1.Runner.Cli;
using OR1.Runner.Sample;

namespace OR1.Runner.Commands;

/// <summary>
/// <c>or1 sample</c>: the bundled end-to-end run — a small reasoning model made better at verifiable
/// arithmetic by supervised warm-up and then MAGIC, with held-out avg@8 before and after.
/// </summary>
public static class SampleCommand
{
    public static Command Create()
    {
        var device = Devices.CreateOption();
        var seed = new Option<ulong>("--seed") { Description = "Seed of data, initialisation and sampling; the same seed gives the same summary", DefaultValueFactory = _ => 1UL };
        var output = new Option<string>("--out") { Description = "Run folder", DefaultValueFactory = _ => Path.Combine("runs", "sample") };
        var quick = new Option<bool>("--quick") { Description = "A smoke run of under a minute at toy sizes" };
        var config = new Option<string?>("--config") { Description = "Your own stage schedule for the same task (JSON: stages, learning_rate, entropy_target, ...)" };
        var command = new Command("sample", "Train a small reasoning model with MAGIC on synthetic arithmetic, end to end") { device, seed, output, quick, config };
        command.SetAction(r => Run(r.GetValue(device)!, r.GetValue(seed), r.GetValue(output)!, r.GetValue(quick), r.GetValue(config)));
        return command;
    }

    public static int Run(string device, ulong seed, string outputDir, bool quick, string? configPath)
    {
        SingleProcessOnly.Check("or1 sample");
        var settings = quick ? SampleSettings.Quick : new SampleSettings();
        if (configPath is not null) settings = SampleSchedule.Apply(configPath, settings);
        using var backend = Devices.Create(device);
        new SampleRun(backend, settings, seed, outputDir, quick).Run();
        return 0;
    }
}

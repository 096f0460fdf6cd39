using System.CommandLine;

namespace OR1.Runner.Cli;

/// <summary>
/// <c>--decode-steps-per-sync</c> of the commands that generate (generate, eval): decode steps run back to back on the device
/// (stop tokens and length limits applied there) before the host reads their tokens.
/// </summary>
public static class DecodeStepsOption
{
    public static Option<int> Create() => new("--decode-steps-per-sync")
    {
        Description = "Decode steps run on the device before the host reads their tokens (stop tokens and length limits are applied on the device; " +
                      "a sample that stops within a run idles until it ends). 0 (default): 1 on the cpu device, 4 on GPUs",
        DefaultValueFactory = _ => 0,
    };

    /// <summary>The option's value, checked before a command loads anything.</summary>
    public static int Checked(int steps) =>
        steps >= 0 ? steps : throw new CliException($"--decode-steps-per-sync is {steps}; it must be 0 (the device's default) or positive");
}

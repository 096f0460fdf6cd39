using System.CommandLine;
using OR1.Native;

namespace OR1.Runner.Commands;

/// <summary>
/// <c>or1 info</c>, what a user with a GPU runs first: every backend this build has in a table, whether it starts here
/// (or why not), its device facts, and a tiny op check against the Cpu backend with the largest difference; then the
/// kernel files beside OR1.Native.dll and the CUDA libraries, so an installed tool or package shows what it carries.
/// <c>--device X</c> runs the earlier check on X first; <c>--json</c> prints the same as JSON.
/// </summary>
public static class InfoCommand
{
    public static Command Create()
    {
        var device = new Option<string?>("--device")
        {
            Description = "Before the table, run the GRPO-advantage check on this backend and show its device work: " + Backends.Help,
        };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON (snake_case) instead of text" };
        var command = new Command("info",
            "Every backend: whether it starts here (or why not), its device facts, and a small op check against cpu. " +
            "Exit code 1 when a backend that starts fails its check, 2 when the --device backend does not start")
        {
            device, json,
        };
        command.SetAction(r => Run(r.GetValue(device), r.GetValue(json), Console.Out, Console.Error));
        return command;
    }

    /// <summary>Prints the report to <paramref name="output"/> and problems to <paramref name="error"/>; returns the exit code.</summary>
    /// <param name="device">The --device backend, or null.</param>
    /// <param name="json">JSON instead of text.</param>
    /// <param name="output">Where the report goes.</param>
    /// <param name="error">Where a failed check or a --device backend that does not start is reported.</param>
    /// <param name="beforeCompare">A test seam: sees (and may perturb) each backend's op results before they are compared.</param>
    public static int Run(string? device, bool json, TextWriter output, TextWriter error, Action<string, string, float[]>? beforeCompare = null)
    {
        var report = InfoReport.Collect(device, beforeCompare);
        // Under mpirun every rank checks; rank 0 alone prints the report (the others only their failures).
        if (report.World is { Rank: > 0 } && report.ChecksPassed) return report.ExitCode;
        if (json) output.WriteLine(InfoJson.Serialize(report));
        else InfoText.Write(report, output);
        if (report.Device?.Error is { } reason) error.WriteLine($"or1: --device '{device}': {reason}");
        var failures = InfoText.Failures(report);
        if (failures.Count > 0) error.WriteLine($"or1: the op check failed on {string.Join("; ", failures)}");
        return report.ExitCode;
    }
}

using System.CommandLine;
using OR1.Runner.Cli;
using OR1.Runner.Commands;

namespace OR1.Runner;

/// <summary>The <c>or1</c> command: the bundled sample, and the tools around a Qwen2 policy.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("or1 — GRPO/MAGIC training of reasoning models from hand-written kernels")
        {
            SampleCommand.Create(),
            InfoCommand.Create(),
            LogProbsCommand.Create(),
            GenerateCommand.Create(),
            StepCommand.Create(),
            TrainCommand.Create(),
            EvalCommand.Create(),
            RewardCommand.Create(),
            PlanCommand.Create(),
        };
        var debugSync = new Option<bool>("--debug-sync")
        {
            Description = "Wait for the device after every kernel and check its error record, so a failing kernel or a bad index " +
                          "is reported by the op that caused it (slow; like CUDA_LAUNCH_BLOCKING=1; also OR1_DEBUG_SYNC=1)",
            Recursive = true,
        };
        root.Options.Add(debugSync);
        try
        {
            var parsed = root.Parse(args);
            // The kernel backends read the switch when they are created, whichever command creates them.
            if (parsed.GetValue(debugSync)) Environment.SetEnvironmentVariable("OR1_DEBUG_SYNC", "1");
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (CliException e)
        {
            Console.Error.WriteLine($"or1: {e.Message}");
            return 2;
        }
        catch (OR1.Native.Kernels.KernelException e)
        {
            Console.Error.WriteLine($"or1: {e.Message}");
            return 3;
        }
    }
}

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
        };
        try
        {
            return root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (CliException e)
        {
            Console.Error.WriteLine($"or1: {e.Message}");
            return 2;
        }
    }
}

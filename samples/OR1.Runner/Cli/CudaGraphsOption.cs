using System.CommandLine;

namespace OR1.Runner.Cli;

/// <summary><c>--cuda-graphs</c> of the commands that generate (generate, eval): decode steps as device graphs.</summary>
public static class CudaGraphsOption
{
    public static Option<bool> Create() => new("--cuda-graphs")
    {
        Description = "Run decode steps as CUDA graphs (one launch per step; captured per batch-size bucket) where the backend has them. " +
                      "Default true; --cuda-graphs false launches every op",
        DefaultValueFactory = _ => true,
    };
}

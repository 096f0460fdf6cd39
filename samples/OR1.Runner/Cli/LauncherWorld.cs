using OR1.Native.Distributed;

namespace OR1.Runner.Cli;

/// <summary>
/// Runs a data-parallel command in the world its launcher started (<see cref="Collectives.FromLauncher"/>: one process
/// without mpirun). A rank that fails says so on stderr, naming itself, and aborts the world: the other ranks would
/// otherwise wait forever in their next collective for it (and MPI_Finalize would wait for them). Every rank stops,
/// mpirun reports the abort with the rank's number, and files written so far (checkpoints are atomic) stay valid.
/// </summary>
public static class LauncherWorld
{
    public static int Run(Func<ICollectives, int> command)
    {
        var world = Collectives.FromLauncher();
        if (world.WorldSize == 1) return command(world);
        int code;
        try
        {
            code = command(world);
        }
        catch (Exception e)
        {
            code = e switch { CliException => 2, OR1.Native.Kernels.KernelException => 3, _ => 1 };
            string what = e is CliException or OR1.Native.Kernels.KernelException ? e.Message : e.ToString();
            Console.Error.WriteLine($"or1: rank {world.Rank} of {world.WorldSize} stops the run: {what}");
            Console.Error.Flush();
            world.Abort(code);
            throw; // not reached: Abort ends the process
        }
        world.Dispose();
        return code;
    }
}

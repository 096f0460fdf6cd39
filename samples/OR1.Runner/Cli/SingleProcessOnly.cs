using OR1.Native.Distributed;

namespace OR1.Runner.Cli;

/// <summary>
/// The commands that do not run data parallel yet refuse to start under an MPI launcher, where every rank would repeat
/// the whole job and write the same files; <c>or1 train</c>, <c>or1 step</c>, <c>or1 info</c> and <c>or1 plan</c> run under it.
/// </summary>
public static class SingleProcessOnly
{
    public static void Check(string command)
    {
        int world = Collectives.LauncherWorldSize();
        if (world > 1)
            throw new CliException($"{command} runs as one process; it was started as one of {world} MPI ranks, which would each repeat the whole job " +
                                   "and write the same files. Run it without mpirun (data parallel runs: or1 train and or1 step)");
    }
}

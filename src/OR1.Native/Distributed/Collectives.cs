namespace OR1.Native.Distributed;

/// <summary>Where the ranks come from, and the size rules every implementation checks.</summary>
public static class Collectives
{
    /// <summary>
    /// The world this process was started in, read from the launcher's environment (Open MPI's mpirun sets
    /// OMPI_COMM_WORLD_SIZE; Hydra-style launchers PMI_SIZE): MPI when it says more than one rank, else
    /// <see cref="SingleProcess"/>. No flag: <c>mpirun -np 4 or1 train ...</c> is four ranks, <c>or1 train ...</c> one.
    /// </summary>
    public static ICollectives FromLauncher()
    {
        int size = LauncherWorldSize();
        return size > 1 ? MpiCollectives.Start() : SingleProcess.Instance;
    }

    /// <summary>The world size the launcher's environment announces (1 without a launcher).</summary>
    public static int LauncherWorldSize()
    {
        foreach (var variable in new[] { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE" })
            if (int.TryParse(Environment.GetEnvironmentVariable(variable), out int size) && size > 0) return size;
        return 1;
    }

    /// <summary>
    /// This process's index among the ranks of its machine, as the launcher announces it (Open MPI:
    /// OMPI_COMM_WORLD_LOCAL_RANK; Hydra: MPI_LOCALRANKID; Slurm: SLURM_LOCALID), or null without a launcher. One rank per
    /// GPU: the rank with local index i uses GPU i.
    /// </summary>
    public static int? LauncherLocalRank()
    {
        foreach (var variable in new[] { "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID" })
            if (int.TryParse(Environment.GetEnvironmentVariable(variable), out int rank) && rank >= 0) return rank;
        return null;
    }

    internal static void CheckScatter(long input, long output, int world, int rank)
    {
        if (output * world != input)
            throw new CollectiveException($"rank {rank}: reduce-scatter of {input:N0} elements into {output:N0} per rank: the input must be world size ({world}) x the output");
    }

    internal static void CheckGather(long input, long output, int world, int rank)
    {
        if (input * world != output)
            throw new CollectiveException($"rank {rank}: all-gather of {input:N0} elements per rank into {output:N0}: the output must be world size ({world}) x the input");
    }

    /// <summary>A reduce's sizes: the root receives as many elements as it sends; the others receive nothing (null).</summary>
    internal static void CheckReduce(long input, long? output, int root, int world, int rank)
    {
        if ((uint)root >= (uint)world) throw new CollectiveException($"rank {rank}: reduce to rank {root}, outside the world of {world} ranks");
        if (rank == root && output != input)
            throw new CollectiveException($"rank {rank}: reduce of {input:N0} elements into {(output is { } n ? $"{n:N0}" : "no output")} at the root: the root's output must have the input's size");
        if (rank != root && output is { } given)
            throw new CollectiveException($"rank {rank}: reduce to rank {root} with an output of {given:N0} elements: only the root receives; the other ranks pass none");
    }

    internal static void CheckRoot(int root, int world)
    {
        if ((uint)root >= (uint)world) throw new CollectiveException($"broadcast from rank {root}, outside the world of {world} ranks");
    }
}

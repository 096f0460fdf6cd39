using OR1.Native.Cuda;
using OR1.Native.Distributed;

namespace OR1.Tests.Distributed;

/// <summary>
/// One GPU per rank: under an MPI launcher a rank opens the GPU of its index on its machine (NCCL refuses two ranks on
/// one GPU); OR1_CUDA_DEVICE overrides it; one process opens GPU 0. Read from the launcher's environment, set here.
/// </summary>
[NonParallelizable]
public sealed class RankDeviceTests
{
    private static readonly string[] Variables = ["OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OR1_CUDA_DEVICE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALRANKID", "SLURM_LOCALID"];
    private Dictionary<string, string?> _saved = [];

    [SetUp]
    public void Save()
    {
        _saved = Variables.ToDictionary(v => v, Environment.GetEnvironmentVariable);
        foreach (var v in Variables) Environment.SetEnvironmentVariable(v, null);
    }

    [TearDown]
    public void Restore()
    {
        foreach (var (v, value) in _saved) Environment.SetEnvironmentVariable(v, value);
    }

    [Test]
    public void EachRankTakesTheGpuOfItsIndexOnItsMachine()
    {
        Assert.That(CudaBackend.DefaultDevice(), Is.Zero, "one process: GPU 0");
        Assert.That(Collectives.LauncherLocalRank(), Is.Null);
        Environment.SetEnvironmentVariable("OMPI_COMM_WORLD_SIZE", "8");
        Environment.SetEnvironmentVariable("OMPI_COMM_WORLD_LOCAL_RANK", "3");
        Assert.That(Collectives.LauncherLocalRank(), Is.EqualTo(3));
        Assert.That(CudaBackend.DefaultDevice(), Is.EqualTo(3), "the fourth rank of a machine: GPU 3");
        Environment.SetEnvironmentVariable("OR1_CUDA_DEVICE", "1");
        Assert.That(CudaBackend.DefaultDevice(), Is.EqualTo(1), "OR1_CUDA_DEVICE overrides the rank's");
        Environment.SetEnvironmentVariable("OR1_CUDA_DEVICE", null);
        Environment.SetEnvironmentVariable("OMPI_COMM_WORLD_SIZE", null);
        Environment.SetEnvironmentVariable("OMPI_COMM_WORLD_LOCAL_RANK", null);
        Environment.SetEnvironmentVariable("SLURM_LOCALID", "2");
        Environment.SetEnvironmentVariable("PMI_SIZE", "4");
        Assert.That(CudaBackend.DefaultDevice(), Is.EqualTo(2), "other launchers' variables");
    }
}

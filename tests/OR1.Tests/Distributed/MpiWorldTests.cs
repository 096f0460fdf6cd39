using System.Text.Json;
using OR1.Native.Distributed;
using OR1.Tests.Support;

namespace OR1.Tests.Distributed;

/// <summary>
/// The collectives between processes started by Open MPI's mpirun: `mpirun -np N or1 info --json` joins the world on
/// every rank, checks every collective against known answers and the refusal of buffers whose sizes differ between
/// ranks, and rank 0 reports the world (2 ranks, and 3: a size that divides nothing in particular). Without a launcher
/// the world is one process. Without mpirun the MPI tests are ignored, or fail under OR1_REQUIRE_MPI=1 (CI installs
/// Debian's openmpi-bin and libopenmpi-dev).
/// </summary>
public sealed class MpiWorldTests
{
    internal static string Or1 => Path.Combine(AppContext.BaseDirectory, "or1.dll");

    private static string? Mpirun()
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            if (File.Exists(Path.Combine(dir, "mpirun"))) return Path.Combine(dir, "mpirun");
        return null;
    }

    internal static string RequireMpirun()
    {
        if (Mpirun() is { } mpirun) return mpirun;
        if (Environment.GetEnvironmentVariable("OR1_REQUIRE_MPI") == "1") Assert.Fail("OR1_REQUIRE_MPI=1 but mpirun is not on PATH (apt-get install openmpi-bin libopenmpi-dev)");
        Assert.Ignore("the MPI tests need Open MPI's mpirun (apt-get install openmpi-bin libopenmpi-dev)");
        return "";
    }

    /// <summary>mpirun's options for a test machine: as root in a container, more ranks than cores, no network probing.</summary>
    internal static IEnumerable<string> MpirunArguments(int ranks, params string[] command) =>
        ["--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader", "-np", ranks.ToString(), "dotnet", Or1, .. command];

    [TestCase(2)]
    [TestCase(3)]
    public async Task EveryCollectiveGivesTheKnownAnswerOnEveryRank(int ranks)
    {
        string mpirun = RequireMpirun();
        var (code, output, error) = await ChildProcess.RunAsync(mpirun, MpirunArguments(ranks, "info", "--json"), TimeSpan.FromMinutes(4),
            // mpirun gives rank 0 a pseudo-terminal, where .NET's console would write a terminal-mode escape before the JSON.
            environment: new Dictionary<string, string> { ["TERM"] = "dumb" });
        TestContext.Out.WriteLine(error);
        Assert.That(code, Is.Zero, $"mpirun -np {ranks} or1 info: {error}");
        using var json = JsonDocument.Parse(output); // rank 0 alone prints
        var world = json.RootElement.GetProperty("world");
        TestContext.Out.WriteLine(world.ToString());
        Assert.That(world.GetProperty("world_size").GetInt32(), Is.EqualTo(ranks));
        Assert.That(world.GetProperty("rank").GetInt32(), Is.Zero);
        Assert.That(world.GetProperty("transport").GetString(), Does.StartWith("mpi (Open MPI"));
        Assert.That(world.GetProperty("any_thread").GetBoolean(), Is.True, "Open MPI grants MPI_THREAD_SERIALIZED: the reduce from a thread of its own was checked too");
        Assert.That(world.GetProperty("check_max_error").GetDouble(), Is.Zero, "every collective's result is exact");
        Assert.That(world.GetProperty("mismatch_refused").GetBoolean(), Is.True, "an all-reduce of different sizes is refused on every rank");
        Assert.That(world.GetProperty("error").ValueKind, Is.EqualTo(JsonValueKind.Null));
    }

    /// <summary>The commands that are not data parallel yet refuse to start as one of several ranks, naming why.</summary>
    [Test]
    public async Task CommandsThatAreNotDataParallelRefuseToStartUnderMpirun()
    {
        string mpirun = RequireMpirun();
        var (code, _, error) = await ChildProcess.RunAsync(mpirun, MpirunArguments(2, "sample", "--quick"), TimeSpan.FromMinutes(2),
            environment: new Dictionary<string, string> { ["TERM"] = "dumb" });
        Assert.That(code, Is.Not.Zero);
        Assert.That(error, Does.Contain("or1 sample runs as one process; it was started as one of 2 MPI ranks"));
    }

    [Test]
    public void WithoutALauncherTheWorldIsOneProcess()
    {
        Assert.That(Collectives.LauncherWorldSize(), Is.EqualTo(1), "the test runner is not started by mpirun");
        using var world = Collectives.FromLauncher();
        Assert.That((world.Rank, world.WorldSize), Is.EqualTo((0, 1)));
        float[] buffer = [1, 2, 3];
        world.AllReduceSum(buffer);
        Assert.That(buffer, Is.EqualTo(new float[] { 1, 2, 3 }));
        var gathered = new float[3];
        world.AllGather(buffer, gathered);
        Assert.That(gathered, Is.EqualTo(buffer));
        Assert.That(() => world.AllGather(buffer, new float[4]), Throws.InstanceOf<CollectiveException>().With.Message.Contains("world size (1) x the input"));
        Assert.That(() => world.ReduceScatterSum(buffer, new float[2]), Throws.InstanceOf<CollectiveException>().With.Message.Contains("reduce-scatter"));
        Assert.That(() => world.Broadcast(new byte[2], 1), Throws.InstanceOf<CollectiveException>().With.Message.Contains("outside the world of 1"));
        var reduced = new float[3];
        world.ReduceSum(buffer, reduced, root: 0);
        Assert.That(reduced, Is.EqualTo(buffer), "the root of one receives its own values");
        Assert.That(() => world.ReduceSum(buffer, new float[2], 0), Throws.InstanceOf<CollectiveException>().With.Message.Contains("the root's output must have the input's size"));
        Assert.That(() => world.ReduceSum(buffer, reduced, 1), Throws.InstanceOf<CollectiveException>().With.Message.Contains("reduce to rank 1, outside the world of 1"));
        Assert.That(world.AnyThread, Is.True, "one process: any thread may call its collectives");
    }

    [Test]
    public void AReduceRefusesAnOutputOnARankThatIsNotTheRoot()
    {
        Assert.That(() => Collectives.CheckReduce(3, 3, root: 0, world: 2, rank: 1),
            Throws.InstanceOf<CollectiveException>().With.Message.EqualTo("rank 1: reduce to rank 0 with an output of 3 elements: only the root receives; the other ranks pass none"));
        Assert.DoesNotThrow(() => Collectives.CheckReduce(3, null, root: 0, world: 2, rank: 1));
        Assert.That(() => Collectives.CheckReduce(3, null, root: 1, world: 2, rank: 1),
            Throws.InstanceOf<CollectiveException>().With.Message.Contains("reduce of 3 elements into no output at the root"));
    }
}

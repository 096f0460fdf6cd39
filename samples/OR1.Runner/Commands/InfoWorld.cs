using OR1.Native.Distributed;

namespace OR1.Runner.Commands;

/// <summary>
/// The ranks this process was started among (<c>mpirun -np N or1 info</c>): the world size, this rank, what carries
/// the collectives, whether a thread other than the one that started them may call them (what the gradients' sum during
/// the backward needs), and, with more than one rank, a check of every collective with known answers (all-reduce of
/// floats and scalars, maximum, reduce, reduce-scatter, all-gather, broadcast, barrier, and an all-reduce from a thread
/// of its own where allowed) and of the size check (an all-reduce whose buffers differ between ranks must be refused on
/// every rank).
/// </summary>
/// <param name="WorldSize">Ranks in the world (1 without a launcher).</param>
/// <param name="Rank">This process's rank.</param>
/// <param name="Transport">What carries the collectives.</param>
/// <param name="AnyThread">Whether any thread may call the collectives, one at a time (MPI_THREAD_SERIALIZED).</param>
/// <param name="CheckMaxError">The largest |result - expected| of the check over every rank (null with one rank).</param>
/// <param name="MismatchRefused">Whether an all-reduce of different sizes was refused on every rank (null with one rank).</param>
/// <param name="Error">Why the world could not be joined or checked, or null.</param>
public sealed record InfoWorld(int WorldSize, int Rank, string Transport, bool AnyThread, double? CheckMaxError, bool? MismatchRefused, string? Error)
{
    public bool Passed => Error is null && (WorldSize == 1 || (CheckMaxError == 0 && MismatchRefused == true));

    public static InfoWorld Collect()
    {
        int announced = Collectives.LauncherWorldSize();
        ICollectives world;
        try
        {
            world = Collectives.FromLauncher();
        }
        catch (CollectiveException e)
        {
            return new InfoWorld(announced, 0, "mpi", false, null, null, e.Message);
        }
        using (world)
        {
            if (world.WorldSize == 1) return new InfoWorld(1, 0, world.Description, world.AnyThread, null, null, null);
            try
            {
                var (error, refused) = Check(world);
                return new InfoWorld(world.WorldSize, world.Rank, world.Description, world.AnyThread, error, refused, null);
            }
            catch (CollectiveException e)
            {
                return new InfoWorld(world.WorldSize, world.Rank, world.Description, world.AnyThread, null, null, e.Message);
            }
        }
    }

    /// <summary>Every collective on values whose results are known exactly (small integers in float and double).</summary>
    private static (double MaxError, bool MismatchRefused) Check(ICollectives world)
    {
        int n = world.WorldSize, r = world.Rank;
        double error = 0;
        void Expect(double actual, double expected) => error = Math.Max(error, Math.Abs(actual - expected));

        var sum = new float[1000];
        for (int i = 0; i < sum.Length; i++) sum[i] = (r + 1) * (i + 1);
        world.AllReduceSum(sum);
        for (int i = 0; i < sum.Length; i++) Expect(sum[i], (i + 1) * n * (n + 1) / 2.0);

        double[] scalars = [r, 1];
        world.AllReduceSum(scalars);
        Expect(scalars[0], n * (n - 1) / 2.0);
        Expect(scalars[1], n);
        double[] most = [r];
        world.AllReduceMax(most);
        Expect(most[0], n - 1);

        const int slice = 37; // not a multiple of anything in particular
        var input = new float[n * slice];
        for (int k = 0; k < input.Length; k++) input[k] = r + k;
        var mine = new float[slice];
        world.ReduceScatterSum(input, mine);
        for (int j = 0; j < slice; j++) Expect(mine[j], n * (n - 1) / 2.0 + n * (r * slice + j));

        // To the last rank only; the others pass no output.
        var reduced = new float[r == n - 1 ? slice : 0];
        world.ReduceSum(input.AsSpan(0, slice), reduced, n - 1);
        for (int j = 0; j < reduced.Length; j++) Expect(reduced[j], n * (n - 1) / 2.0 + n * j);

        if (world.AnyThread)
        {
            // From a thread of its own, as the gradients' sum during the backward calls it.
            var fromThread = new float[slice];
            for (int j = 0; j < slice; j++) fromThread[j] = r * j;
            Exception? failure = null;
            var thread = new Thread(() =>
            {
                try
                {
                    world.AllReduceSum(fromThread);
                }
                catch (Exception e)
                {
                    failure = e;
                }
            });
            thread.Start();
            thread.Join();
            if (failure is not null) throw failure;
            for (int j = 0; j < slice; j++) Expect(fromThread[j], n * (n - 1) / 2.0 * j);
        }

        var part = new float[slice];
        for (int j = 0; j < slice; j++) part[j] = r * 100 + j;
        var all = new float[n * slice];
        world.AllGather(part, all);
        for (int s = 0; s < n; s++)
            for (int j = 0; j < slice; j++) Expect(all[s * slice + j], s * 100 + j);

        var bytes = new byte[257];
        if (r == n - 1) for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)(i * 7 + 3);
        world.Broadcast(bytes, n - 1);
        for (int i = 0; i < bytes.Length; i++) Expect(bytes[i], (byte)(i * 7 + 3));
        world.Barrier();

        bool refused;
        try
        {
            world.AllReduceSum(new float[r + 1]);
            refused = false;
        }
        catch (CollectiveException)
        {
            refused = true;
        }
        double[] verdict = [error, refused ? 0 : 1];
        world.AllReduceMax(verdict);
        return (verdict[0], verdict[1] == 0);
    }
}

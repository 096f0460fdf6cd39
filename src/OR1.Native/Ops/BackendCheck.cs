namespace OR1.Native;

/// <summary>
/// Three tiny ops run on a backend and compared with a reference, so that a user sees at once that its kernels load
/// and compute: a GEMM with a transposed operand ([5, 7] x [6, 7]^T), RMSNorm forward (output and 1/rms of 3 rows of
/// 10) and GRPO advantages over groups of 4, 2 and 1 (the singleton rule included). Sizes are odd on purpose: no
/// multiple of a tile or a warp, so edge handling runs too. The reference is another backend (the Cpu backend, for
/// every other one) or, for the Cpu backend itself, the same formulas in double precision on the host, so no row is
/// compared with itself. All in fp32.
/// </summary>
public static class BackendCheck
{
    /// <summary>
    /// The largest absolute difference that passes. Outputs are at most ~7 in size and come from at most 10 fp32 terms,
    /// so a correct backend differs by ~1e-6; a wrong index or a missing term is off by ~0.1 or more.
    /// </summary>
    public const double Tolerance = 1e-4;

    private const int M = 5, N = 6, K = 7, NormRows = 3, NormWidth = 10;
    private const float NormEpsilon = 1e-6f, GrpoEpsilon = 1e-6f;
    private static readonly int[] s_groups = [4, 2, 1];
    private static readonly float[] s_rewards = [1f, 0f, 1f, 1f, 0.5f, 2f, 3f];

    /// <summary>The ops in the order they run.</summary>
    public static IReadOnlyList<string> Ops { get; } = [nameof(IBackend.MatMul), nameof(IBackend.RmsNormForward), nameof(IBackend.GrpoAdvantages)];

    /// <summary>
    /// Runs the ops on <paramref name="backend"/> and compares them with <paramref name="reference"/>'s results (null: the
    /// host's double-precision formulas). An exception from <paramref name="backend"/> (a kernel that does not load, a
    /// launch that fails) ends the check as failed with its message, never as an exception.
    /// </summary>
    /// <param name="backend">The backend to check.</param>
    /// <param name="reference">The backend whose results count as right; null for the host's formulas.</param>
    /// <param name="beforeCompare">Called with each op's name and its results on <paramref name="backend"/> before they are
    /// compared: a test seam that perturbs a result to show that the check fails.</param>
    public static BackendCheckResult Run(IBackend backend, IBackend? reference = null, Action<string, float[]>? beforeCompare = null)
    {
        ArgumentNullException.ThrowIfNull(backend);
        var expected = reference is null ? HostResults() : BackendResults(reference);
        string against = reference is null ? "double precision on the host" : $"{reference.Kind.ToString().ToLowerInvariant()} backend";
        var ops = new List<OpComparison>();
        try
        {
            foreach (string op in Ops)
            {
                float[] actual = Compute(backend, op);
                beforeCompare?.Invoke(op, actual);
                ops.Add(new OpComparison(op, MaxAbsDifference(actual, expected[op]), Tolerance));
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new BackendCheckResult(against, ops, $"{e.GetType().Name}: {e.Message}");
        }
        return new BackendCheckResult(against, ops);
    }

    private static Dictionary<string, float[]> BackendResults(IBackend backend) => Ops.ToDictionary(op => op, op => Compute(backend, op));

    private static float[] Compute(IBackend backend, string op) => op switch
    {
        nameof(IBackend.MatMul) => MatMul(backend),
        nameof(IBackend.RmsNormForward) => RmsNorm(backend),
        nameof(IBackend.GrpoAdvantages) => Grpo(backend),
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "not an op of the check"),
    };

    /// <summary>Inputs in [-1, 1], different per <paramref name="salt"/>, the same on every machine.</summary>
    private static float[] Inputs(int count, int salt) =>
        Enumerable.Range(0, count).Select(i => MathF.Sin(0.7f * i + 1.3f * salt + 0.5f)).ToArray();

    private static float[] MatMul(IBackend backend)
    {
        using var a = backend.Allocate(DType.Float32, new TensorShape(M, K), "check.a");
        using var b = backend.Allocate(DType.Float32, new TensorShape(N, K), "check.b");
        using var c = backend.Allocate(DType.Float32, new TensorShape(M, N), "check.c");
        backend.Upload<float>(Inputs(M * K, 1), a);
        backend.Upload<float>(Inputs(N * K, 2), b);
        backend.MatMul(a, false, b, true, c);
        var result = new float[M * N];
        backend.Download<float>(c, result);
        return result;
    }

    private static float[] RmsNorm(IBackend backend)
    {
        using var x = backend.Allocate(DType.Float32, new TensorShape(NormRows, NormWidth), "check.x");
        using var weight = backend.Allocate(DType.Float32, new TensorShape(NormWidth), "check.weight");
        using var output = backend.Allocate(DType.Float32, new TensorShape(NormRows, NormWidth), "check.output");
        using var invRms = backend.Allocate(DType.Float32, new TensorShape(NormRows), "check.invRms");
        backend.Upload<float>(Inputs(NormRows * NormWidth, 3), x);
        backend.Upload<float>(Inputs(NormWidth, 4).Select(w => 1f + 0.5f * w).ToArray(), weight);
        backend.RmsNormForward(x, weight, NormEpsilon, output, invRms);
        var result = new float[NormRows * NormWidth + NormRows];
        backend.Download<float>(output, result.AsSpan(0, NormRows * NormWidth));
        backend.Download<float>(invRms, result.AsSpan(NormRows * NormWidth));
        return result;
    }

    private static float[] Grpo(IBackend backend)
    {
        using var rewards = backend.Allocate(DType.Float32, new TensorShape(s_rewards.Length), "check.rewards");
        using var advantages = backend.Allocate(DType.Float32, new TensorShape(s_rewards.Length), "check.advantages");
        using var groups = Segments.FromLengths(backend, s_groups);
        backend.Upload<float>(s_rewards, rewards);
        backend.GrpoAdvantages(rewards, groups, GrpoEpsilon, advantages);
        var result = new float[s_rewards.Length];
        backend.Download<float>(advantages, result);
        return result;
    }

    /// <summary>The op contract's formulas in double precision.</summary>
    private static Dictionary<string, float[]> HostResults()
    {
        float[] a = Inputs(M * K, 1), b = Inputs(N * K, 2);
        var product = new float[M * N];
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
            {
                double sum = 0;
                for (int p = 0; p < K; p++) sum += (double)a[i * K + p] * b[j * K + p];
                product[i * N + j] = (float)sum;
            }

        float[] x = Inputs(NormRows * NormWidth, 3), weight = Inputs(NormWidth, 4).Select(w => 1f + 0.5f * w).ToArray();
        var norm = new float[NormRows * NormWidth + NormRows];
        for (int r = 0; r < NormRows; r++)
        {
            double squares = 0;
            for (int d = 0; d < NormWidth; d++) squares += (double)x[r * NormWidth + d] * x[r * NormWidth + d];
            double inv = 1 / Math.Sqrt(squares / NormWidth + NormEpsilon);
            for (int d = 0; d < NormWidth; d++) norm[r * NormWidth + d] = (float)(x[r * NormWidth + d] * inv * weight[d]);
            norm[NormRows * NormWidth + r] = (float)inv;
        }

        var advantages = new float[s_rewards.Length];
        int start = 0;
        foreach (int count in s_groups)
        {
            var group = s_rewards.AsSpan(start, count);
            double mean = 0, std = 1; // a group of one: mean 0, std 1 (the contract's rule)
            if (count > 1)
            {
                foreach (float r in group) mean += r;
                mean /= count;
                double squares = 0;
                foreach (float r in group) squares += (r - mean) * (r - mean);
                std = Math.Sqrt(squares / (count - 1));
            }
            for (int i = 0; i < count; i++) advantages[start + i] = (float)((group[i] - mean) / (std + GrpoEpsilon));
            start += count;
        }

        return new Dictionary<string, float[]>
        {
            [nameof(IBackend.MatMul)] = product,
            [nameof(IBackend.RmsNormForward)] = norm,
            [nameof(IBackend.GrpoAdvantages)] = advantages,
        };
    }

    private static double MaxAbsDifference(float[] actual, float[] expected)
    {
        if (actual.Length != expected.Length) return double.PositiveInfinity;
        double max = 0;
        for (int i = 0; i < actual.Length; i++) max = Math.Max(max, Math.Abs((double)actual[i] - expected[i]));
        return max;
    }
}

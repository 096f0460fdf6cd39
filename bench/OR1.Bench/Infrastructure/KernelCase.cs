using OR1.Native;

namespace OR1.Bench;

/// <summary>
/// One benchmark case of a kernel family: a backend (by <see cref="OR1.Native.Backends"/> name), the
/// scale it runs at, the shape (a model's widths, or for the GRPO ops a rollout batch) and the storage
/// dtype of the family's activations (fp32, or bf16 where the family runs both and the backend stores it).
/// Shown in the summary as "backend/shape", "backend/shape/bf16".
/// </summary>
public sealed record KernelCase(string Backend, BenchScale Scale, ModelShape? Model = null, RolloutShape? Rollout = null,
    DType Storage = DType.Float32)
{
    /// <summary>The model shape, for the families sized by one.</summary>
    public ModelShape ModelShape => Model ?? throw new InvalidOperationException($"case {this} has no model shape");

    /// <summary>The rollout batch, for the GRPO family.</summary>
    public RolloutShape RolloutShape => Rollout ?? throw new InvalidOperationException($"case {this} has no rollout shape");

    /// <summary>The shape, whichever kind it is.</summary>
    public IBenchShape Shape => (IBenchShape?)Model ?? RolloutShape;

    /// <summary>Whether the shape is one of the odd ones.</summary>
    public bool IsOdd => Shape.IsOdd;

    /// <summary><paramref name="count"/> tokens, one fewer for an odd shape (so no tile size divides it).</summary>
    public int Tokens(int count) => IsOdd ? count - 1 : count;

    /// <summary>
    /// <paramref name="count"/> sequence lengths of <paramref name="length"/>; for an odd shape
    /// length-1, length-3, ... (at least 1), so no tile divides them and they differ.
    /// </summary>
    public int[] Lengths(int count, int length) =>
        Enumerable.Range(0, count).Select(i => IsOdd ? Math.Max(1, length - 1 - 2 * i) : length).ToArray();

    /// <summary>Every selected backend with every model shape it can run (the simulators only the tiny odd one).</summary>
    public static IEnumerable<KernelCase> ForModels() =>
        Enumerate(ModelShape.Real, ModelShape.OddTiny, (backend, scale, shape) => new KernelCase(backend, scale, Model: shape));

    /// <summary><see cref="ForModels"/>, and again in bf16 storage on the backends that store bf16.</summary>
    public static IEnumerable<KernelCase> ForModelsInEachStorage() =>
        ForModels().Concat(ForModels().Where(c => BenchSelection.StorageTypes(c.Backend).Contains(DType.BFloat16))
            .Select(c => c with { Storage = DType.BFloat16 }));

    /// <summary>Every selected backend with every rollout batch it can run.</summary>
    public static IEnumerable<KernelCase> ForRollouts() =>
        Enumerate(RolloutShape.Real, RolloutShape.OddTiny, (backend, scale, shape) => new KernelCase(backend, scale, Rollout: shape));

    private static IEnumerable<KernelCase> Enumerate<TShape>(IReadOnlyList<TShape> real, TShape tiny,
        Func<string, BenchScale, TShape, KernelCase> create) where TShape : IBenchShape =>
        from backend in BenchSelection.AvailableBackends()
        let scale = BenchScale.For(backend)
        from shape in scale == BenchScale.Simulator ? [tiny] : real
        where BenchSelection.KeepsShape(shape.Name)
        select create(backend, scale, shape);

    public override string ToString() => Storage switch
    {
        DType.Float32 => $"{Backend}/{Shape.Name}",
        DType.BFloat16 => $"{Backend}/{Shape.Name}/bf16",
        _ => $"{Backend}/{Shape.Name}/{Storage}",
    };
}

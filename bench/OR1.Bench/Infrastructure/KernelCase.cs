namespace OR1.Bench;

/// <summary>
/// One benchmark case of a kernel family: a backend (by <see cref="OR1.Native.Backends"/> name), the
/// scale it runs at, and the shape: a model's widths, or for the GRPO ops a rollout batch.
/// Shown in the summary as "backend/shape".
/// </summary>
public sealed record KernelCase(string Backend, BenchScale Scale, ModelShape? Model = null, RolloutShape? Rollout = null)
{
    /// <summary>The model shape, for the families sized by one.</summary>
    public ModelShape ModelShape => Model ?? throw new InvalidOperationException($"case {this} has no model shape");

    /// <summary>The rollout batch, for the GRPO family.</summary>
    public RolloutShape RolloutShape => Rollout ?? throw new InvalidOperationException($"case {this} has no rollout shape");

    /// <summary>Whether the shape is one of the odd ones.</summary>
    public bool IsOdd => Model?.IsOdd ?? Rollout!.Name.StartsWith("odd", StringComparison.Ordinal);

    /// <summary>Every selected backend with every model shape it can run (the simulators only the tiny odd one).</summary>
    public static IEnumerable<KernelCase> ForModels() =>
        Enumerate(ModelShape.Real, ModelShape.OddTiny, s => s.Name, (backend, scale, shape) => new KernelCase(backend, scale, Model: shape));

    /// <summary>Every selected backend with every rollout batch it can run.</summary>
    public static IEnumerable<KernelCase> ForRollouts() =>
        Enumerate(RolloutShape.Real, RolloutShape.OddTiny, s => s.Name, (backend, scale, shape) => new KernelCase(backend, scale, Rollout: shape));

    private static IEnumerable<KernelCase> Enumerate<TShape>(IReadOnlyList<TShape> real, TShape tiny, Func<TShape, string> name,
        Func<string, BenchScale, TShape, KernelCase> create) =>
        from backend in BenchSelection.AvailableBackends()
        let scale = BenchScale.For(backend)
        from shape in scale == BenchScale.Simulator ? [tiny] : real
        where BenchSelection.KeepsShape(name(shape))
        select create(backend, scale, shape);

    public override string ToString() => $"{Backend}/{(Model?.Name ?? Rollout?.Name)}";
}

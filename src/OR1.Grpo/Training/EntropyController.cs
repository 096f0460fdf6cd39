namespace OR1.Grpo.Training;

/// <summary>Settings of MAGIC's adaptive entropy control (docs/RECIPE.md step 8).</summary>
/// <param name="Target">Target per-token entropy; below it the bonus grows and is switched on.</param>
/// <param name="Delta">Step of the coefficient per update.</param>
/// <param name="Initial">c_0.</param>
/// <param name="Min">Lower clamp of the coefficient.</param>
/// <param name="Max">Upper clamp of the coefficient.</param>
public sealed record EntropyControlOptions(
    double Target = 0.2,
    double Delta = 1e-4,
    double Initial = 0,
    double Min = 0,
    double Max = 5e-3);

/// <summary>The controller's state: the coefficient c_k and whether the bonus is on (saved in checkpoints).</summary>
/// <param name="Coefficient">c_k.</param>
/// <param name="Enabled">enabled_k: the bonus applies only while entropy is below the target.</param>
public readonly record struct EntropyControlState(double Coefficient, bool Enabled)
{
    /// <summary>alpha_k = c_k * enabled_k, the entropy-bonus weight used in the loss.</summary>
    public double Alpha => Enabled ? Coefficient : 0;
}

/// <summary>
/// Adaptive entropy control: after each update, with e_k the kept batch's mean -logp_old of sampled tokens,
/// c_{k+1} = clip(c_k + delta if e_k &lt; target else c_k - delta, c_min, c_max) and enabled_{k+1} = e_k &lt; target.
/// A pure function, so it is tested on scripted entropy sequences.
/// </summary>
public static class EntropyController
{
    /// <summary>The state before the first step.</summary>
    public static EntropyControlState Initial(EntropyControlOptions options) => new(Math.Clamp(options.Initial, options.Min, options.Max), false);

    /// <summary>The next state after a step whose estimated entropy was <paramref name="entropy"/>.</summary>
    public static EntropyControlState Update(EntropyControlState state, double entropy, EntropyControlOptions options)
    {
        if (!double.IsFinite(entropy)) throw new ArgumentException($"the entropy estimate is {entropy}; a finite value is required", nameof(entropy));
        bool below = entropy < options.Target;
        double next = below ? state.Coefficient + options.Delta : state.Coefficient - options.Delta;
        return new EntropyControlState(Math.Clamp(next, options.Min, options.Max), below);
    }
}

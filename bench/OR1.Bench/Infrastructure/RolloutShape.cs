namespace OR1.Bench;

/// <summary>
/// A GRPO rollout batch: prompts, responses per prompt (the group) and the mean response length in
/// tokens. The OR1-7B rows are its published stages (256 x 16 at a 16K context, then 160 x 32 at 32K),
/// with responses taken to average half the context; "odd" has a group of 7 and lengths near 999.
/// </summary>
public sealed record RolloutShape(string Name, int Prompts, int GroupSize, int MeanResponseTokens) : IBenchShape
{
    public static readonly RolloutShape Or1_7B_Stage1 = new("OR1-7B stage 1", 256, 16, 8192);
    public static readonly RolloutShape Or1_7B_Stage2 = new("OR1-7B stage 2", 160, 32, 16384);
    public static readonly RolloutShape Odd = new("odd", 37, 7, 999);
    public static readonly RolloutShape OddTiny = new("odd-tiny", 5, 3, 17);

    /// <summary>The shapes a CPU or GPU backend runs.</summary>
    public static IReadOnlyList<RolloutShape> Real { get; } = [Or1_7B_Stage1, Or1_7B_Stage2, Odd];

    /// <summary>Responses in the batch.</summary>
    public int Responses => Prompts * GroupSize;

    public override string ToString() => Name;
}

using OR1.Native;

namespace OR1.Bench;

/// <summary>
/// The widths of a Qwen2 model that size the kernels: hidden, attention heads, MLP intermediate and
/// vocabulary. The three published Qwen2.5 rows are the bases of the DeepSeek-R1-Distill-Qwen checkpoints
/// Skywork-OR1 starts from; "odd" has no width that is a multiple of 8 (or of any tile), so it exercises
/// every remainder path (head dims stay even: rotary embedding pairs i with i + D/2); "odd-tiny" is an
/// odd shape small enough for the simulators.
/// </summary>
public sealed record ModelShape(string Name, int Hidden, AttentionHeads Heads, int Intermediate, int Vocab) : IBenchShape
{
    public static readonly ModelShape Qwen25_0_5B = new("Qwen2.5-0.5B", 896, new AttentionHeads(14, 2, 64), 4864, 151936);
    public static readonly ModelShape Qwen25_1_5B = new("Qwen2.5-1.5B", 1536, new AttentionHeads(12, 2, 128), 8960, 151936);
    public static readonly ModelShape Qwen25_7B = new("Qwen2.5-7B", 3584, new AttentionHeads(28, 4, 128), 18944, 152064);
    public static readonly ModelShape Odd = new("odd", 1020, new AttentionHeads(10, 2, 102), 2755, 50257);
    public static readonly ModelShape OddTiny = new("odd-tiny", 66, new AttentionHeads(3, 1, 22), 183, 509);

    /// <summary>The shapes a CPU or GPU backend runs.</summary>
    public static IReadOnlyList<ModelShape> Real { get; } = [Qwen25_0_5B, Qwen25_1_5B, Qwen25_7B, Odd];

    /// <summary>
    /// The [rows, columns] of the seven projection weights of one decoder layer (q, k, v, o, gate, up,
    /// down): what a layer's gradient norm and optimizer step read.
    /// </summary>
    public IReadOnlyList<(int Rows, int Columns)> LayerWeights =>
    [
        (Heads.QueryWidth, Hidden), (Heads.KvWidth, Hidden), (Heads.KvWidth, Hidden), (Hidden, Heads.QueryWidth),
        (Intermediate, Hidden), (Intermediate, Hidden), (Hidden, Intermediate),
    ];

    /// <summary>
    /// <see cref="LayerWeights"/> with every row count scaled by the same factor (at most 1, at least one
    /// row each) so that the layer's elements times <paramref name="bytesPerElement"/> fit <paramref name="budget"/>.
    /// </summary>
    public IReadOnlyList<(int Rows, int Columns)> LayerWeightsWithin(long budget, int bytesPerElement)
    {
        long elements = LayerWeights.Sum(w => (long)w.Rows * w.Columns);
        double factor = Math.Min(1.0, budget / ((double)elements * bytesPerElement));
        return LayerWeights.Select(w => (Math.Max(1, (int)(w.Rows * factor)), w.Columns)).ToArray();
    }

    public override string ToString() => Name;
}

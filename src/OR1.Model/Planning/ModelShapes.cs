namespace OR1.Model.Planning;

/// <summary>
/// The shapes of the released DeepSeek-R1-Distill-Qwen checkpoints (their config.json files), for planning a run before
/// any weights are at hand: <c>or1 plan --shape 1.5b|7b|14b|32b</c>.
/// </summary>
public static class ModelShapes
{
    /// <summary>The names <see cref="Get"/> takes.</summary>
    public static IReadOnlyList<string> Names { get; } = ["1.5b", "7b", "14b", "32b"];

    /// <summary>The config of a released size, or null for an unknown name.</summary>
    public static Qwen2Config? Get(string name) => name.ToLowerInvariant() switch
    {
        // DeepSeek-R1-Distill-Qwen-1.5B (from Qwen2.5-Math-1.5B): untied head, rope theta 10,000.
        "1.5b" => Shape(1536, 8960, 28, 12, 2, 151936, 10000),
        // DeepSeek-R1-Distill-Qwen-7B (from Qwen2.5-Math-7B).
        "7b" => Shape(3584, 18944, 28, 28, 4, 152064, 10000),
        // DeepSeek-R1-Distill-Qwen-14B and -32B (from Qwen2.5-14B / -32B): rope theta 1,000,000.
        "14b" => Shape(5120, 13824, 48, 40, 8, 152064, 1000000),
        "32b" => Shape(5120, 27648, 64, 40, 8, 152064, 1000000),
        _ => null,
    };

    private static Qwen2Config Shape(int hidden, int intermediate, int layers, int heads, int kvHeads, int vocab, double theta) => new()
    {
        HiddenSize = hidden,
        IntermediateSize = intermediate,
        NumHiddenLayers = layers,
        NumAttentionHeads = heads,
        NumKeyValueHeads = kvHeads,
        VocabSize = vocab,
        RmsNormEps = 1e-6,
        RopeTheta = theta,
        MaxPositionEmbeddings = 131072,
        TieWordEmbeddings = false,
    };
}

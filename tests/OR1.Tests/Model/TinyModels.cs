using OR1.Model;
using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Model;

/// <summary>Tiny Qwen2 configs and fully random weights (norms and biases too) for model tests.</summary>
public static class TinyModels
{
    /// <summary>2 layers, GQA 4:2, head dim 4, odd vocabulary and intermediate sizes.</summary>
    public static Qwen2Config Config(bool tied, int layers = 2, int vocab = 37) => new()
    {
        HiddenSize = 16,
        IntermediateSize = 24,
        NumHiddenLayers = layers,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        RmsNormEps = 1e-6,
        RopeTheta = 10000,
        VocabSize = vocab,
        MaxPositionEmbeddings = 128,
        TieWordEmbeddings = tied,
    };

    /// <summary>
    /// Random values for every parameter: weights N(0, 0.3^2) (large enough that attention and SwiGLU are
    /// far from linear), biases N(0, 0.1^2), norm weights 1 + N(0, 0.2^2), so every term of the model is
    /// exercised (HF's init would leave biases at 0 and norms at 1).
    /// </summary>
    public static Dictionary<string, float[]> Randomize(Qwen2Weights weights, int seed)
    {
        var values = new Dictionary<string, float[]>();
        int i = 0;
        foreach (var (name, tensor) in weights.Named)
        {
            int n = (int)tensor.ElementCount;
            float[] data = name.EndsWith("norm.weight", StringComparison.Ordinal)
                ? TestData.Normal(n, seed + i, 1f, 0.2f)
                : name.EndsWith(".bias", StringComparison.Ordinal) ? TestData.Normal(n, seed + i, 0f, 0.1f) : TestData.Normal(n, seed + i, 0f, 0.3f);
            weights.Set(name, data);
            values[name] = data;
            i++;
        }
        return values;
    }

    /// <summary>A random untied tiny model saved as a checkpoint folder <paramref name="directory"/>/model (what the command tests update).</summary>
    public static string SaveCheckpoint(string directory, int seed)
    {
        string model = Path.Combine(directory, "model");
        using var backend = new OR1.Native.Cpu.CpuBackend(threads: 2);
        using var m = new Qwen2Model(backend, Config(tied: false));
        Randomize(m.Weights, seed);
        Qwen2ModelFiles.Save(m, model);
        return model;
    }
}

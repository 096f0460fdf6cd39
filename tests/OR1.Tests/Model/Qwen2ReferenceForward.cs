using OR1.Model;

namespace OR1.Tests.Model;

/// <summary>
/// An independent double-precision Qwen2 forward written directly from HF's modeling_qwen2 formulas, for
/// one sequence: x = embed; per layer h = RMSNorm(x) (x * rsqrt(mean(x^2) + eps) * w); q, k, v = h W^T + b;
/// rotate_half RoPE with inv_freq = theta^(-2i/D); causal softmax(q k^T / sqrt(D)) v with query head h
/// reading kv head h / (Hq / Hkv); x += o_proj; x += down(silu(gate(h)) * up(h)); logits = RMSNorm(x) lm_head^T.
/// It shares no code with the model or the backends.
/// </summary>
public static class Qwen2ReferenceForward
{
    public static double[,] Logits(Qwen2Config c, IReadOnlyDictionary<string, float[]> w, int[] tokens)
    {
        int t = tokens.Length, h = c.HiddenSize, d = c.HiddenSize / c.NumAttentionHeads, hq = c.NumAttentionHeads, hkv = c.NumKeyValueHeads;
        var x = new double[t, h];
        var embed = w["model.embed_tokens.weight"];
        for (int i = 0; i < t; i++)
            for (int j = 0; j < h; j++) x[i, j] = embed[tokens[i] * h + j];
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"model.layers.{l}.";
            var n1 = Norm(x, w[p + "input_layernorm.weight"], c.RmsNormEps);
            var q = Linear(n1, w[p + "self_attn.q_proj.weight"], w[p + "self_attn.q_proj.bias"], hq * d);
            var k = Linear(n1, w[p + "self_attn.k_proj.weight"], w[p + "self_attn.k_proj.bias"], hkv * d);
            var v = Linear(n1, w[p + "self_attn.v_proj.weight"], w[p + "self_attn.v_proj.bias"], hkv * d);
            Rope(q, hq, d, c.RopeTheta);
            Rope(k, hkv, d, c.RopeTheta);
            var attn = new double[t, hq * d];
            for (int head = 0; head < hq; head++)
            {
                int kvHead = head / (hq / hkv);
                for (int i = 0; i < t; i++)
                {
                    var scores = new double[i + 1];
                    double max = double.NegativeInfinity;
                    for (int j = 0; j <= i; j++)
                    {
                        double s = 0;
                        for (int e = 0; e < d; e++) s += q[i, head * d + e] * k[j, kvHead * d + e];
                        scores[j] = s / Math.Sqrt(d);
                        max = Math.Max(max, scores[j]);
                    }
                    double z = 0;
                    for (int j = 0; j <= i; j++) z += scores[j] = Math.Exp(scores[j] - max);
                    for (int e = 0; e < d; e++)
                    {
                        double sum = 0;
                        for (int j = 0; j <= i; j++) sum += scores[j] / z * v[j, kvHead * d + e];
                        attn[i, head * d + e] = sum;
                    }
                }
            }
            AddInto(x, Linear(attn, w[p + "self_attn.o_proj.weight"], null, h));
            var n2 = Norm(x, w[p + "post_attention_layernorm.weight"], c.RmsNormEps);
            var gate = Linear(n2, w[p + "mlp.gate_proj.weight"], null, c.IntermediateSize);
            var up = Linear(n2, w[p + "mlp.up_proj.weight"], null, c.IntermediateSize);
            for (int i = 0; i < t; i++)
                for (int j = 0; j < c.IntermediateSize; j++) gate[i, j] = gate[i, j] / (1 + Math.Exp(-gate[i, j])) * up[i, j];
            AddInto(x, Linear(gate, w[p + "mlp.down_proj.weight"], null, h));
        }
        var final = Norm(x, w["model.norm.weight"], c.RmsNormEps);
        var head_ = c.TieWordEmbeddings ? embed : w["lm_head.weight"];
        return Linear(final, head_, null, c.VocabSize);
    }

    private static double[,] Norm(double[,] x, float[] weight, double eps)
    {
        int t = x.GetLength(0), h = x.GetLength(1);
        var y = new double[t, h];
        for (int i = 0; i < t; i++)
        {
            double ms = 0;
            for (int j = 0; j < h; j++) ms += x[i, j] * x[i, j];
            double r = 1 / Math.Sqrt(ms / h + eps);
            for (int j = 0; j < h; j++) y[i, j] = x[i, j] * r * weight[j];
        }
        return y;
    }

    private static double[,] Linear(double[,] x, float[] weight, float[]? bias, int outputs)
    {
        int t = x.GetLength(0), inputs = x.GetLength(1);
        var y = new double[t, outputs];
        for (int i = 0; i < t; i++)
            for (int o = 0; o < outputs; o++)
            {
                double s = bias?[o] ?? 0;
                for (int e = 0; e < inputs; e++) s += x[i, e] * weight[o * inputs + e];
                y[i, o] = s;
            }
        return y;
    }

    private static void Rope(double[,] x, int heads, int d, double theta)
    {
        for (int i = 0; i < x.GetLength(0); i++)
            for (int head = 0; head < heads; head++)
                for (int e = 0; e < d / 2; e++)
                {
                    double angle = i * Math.Pow(theta, -2.0 * e / d);
                    double a = x[i, head * d + e], b = x[i, head * d + e + d / 2];
                    x[i, head * d + e] = a * Math.Cos(angle) - b * Math.Sin(angle);
                    x[i, head * d + e + d / 2] = b * Math.Cos(angle) + a * Math.Sin(angle);
                }
    }

    private static void AddInto(double[,] x, double[,] y)
    {
        for (int i = 0; i < x.GetLength(0); i++)
            for (int j = 0; j < x.GetLength(1); j++) x[i, j] += y[i, j];
    }
}

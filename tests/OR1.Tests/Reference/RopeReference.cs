namespace OR1.Tests.Reference;

/// <summary>
/// Rotary position embedding, HF "rotate_half" convention: within each head, element i (i &lt; D/2) pairs with
/// i + D/2 and the pair is rotated by angle = position * theta^(-2i/D). x [N, heads * D], positions [N].
/// </summary>
public static class RopeReference
{
    /// <summary>out[i] = x[i] cos - x[i + D/2] sin; out[i + D/2] = x[i + D/2] cos + x[i] sin.</summary>
    public static double[] Forward(double[] x, int[] positions, int numHeads, int headDim, double theta)
        => Rotate(x, positions, numHeads, headDim, theta, sign: +1);

    /// <summary>The rotation is orthogonal, so its backward is the rotation by the opposite angle.</summary>
    public static double[] Backward(double[] dOutput, int[] positions, int numHeads, int headDim, double theta)
        => Rotate(dOutput, positions, numHeads, headDim, theta, sign: -1);

    /// <summary>The angle element pair i of a row at <paramref name="position"/> is rotated by.</summary>
    public static double Angle(int position, int i, int headDim, double theta) => position * Math.Pow(theta, -2.0 * i / headDim);

    private static double[] Rotate(double[] x, int[] positions, int numHeads, int headDim, double theta, int sign)
    {
        if (headDim % 2 != 0) throw new ArgumentException($"head dim {headDim} must be even", nameof(headDim));
        int width = numHeads * headDim;
        if (x.Length != positions.Length * width)
            throw new ArgumentException($"x has {x.Length} elements, expected {positions.Length}x{numHeads}x{headDim}", nameof(x));
        int half = headDim / 2;
        var output = new double[x.Length];
        for (int n = 0; n < positions.Length; n++)
        {
            for (int h = 0; h < numHeads; h++)
            {
                int b = n * width + h * headDim;
                for (int i = 0; i < half; i++)
                {
                    double angle = sign * Angle(positions[n], i, headDim, theta);
                    double cos = Math.Cos(angle), sin = Math.Sin(angle);
                    double x1 = x[b + i], x2 = x[b + i + half];
                    output[b + i] = x1 * cos - x2 * sin;
                    output[b + i + half] = x2 * cos + x1 * sin;
                }
            }
        }
        return output;
    }
}

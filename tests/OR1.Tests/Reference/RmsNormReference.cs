namespace OR1.Tests.Reference;

/// <summary>RMSNorm over rows: output = x * invRms * weight, invRms = 1 / sqrt(mean(x^2) + eps). x [N, D], weight [D].</summary>
public static class RmsNormReference
{
    /// <summary>Returns the output [N, D] and the per-row invRms [N] that the backward reuses.</summary>
    public static (double[] Output, double[] InvRms) Forward(double[] x, double[] weight, int rows, int dim, double eps)
    {
        Check(x, weight, rows, dim);
        var output = new double[rows * dim];
        var invRms = new double[rows];
        for (int n = 0; n < rows; n++)
        {
            double sumSquares = 0;
            for (int d = 0; d < dim; d++) sumSquares += x[n * dim + d] * x[n * dim + d];
            double r = 1.0 / Math.Sqrt(sumSquares / dim + eps);
            invRms[n] = r;
            for (int d = 0; d < dim; d++) output[n * dim + d] = x[n * dim + d] * r * weight[d];
        }
        return (output, invRms);
    }

    /// <summary>
    /// Returns dx (a fresh array: the op overwrites it) and adds sum_n dOutput * x * invRms into dWeight.
    /// With r = invRms, dr/dx_i = -r^3 x_i / D, so dx_i = r w_i g_i - (r^3 / D) x_i sum_j g_j w_j x_j.
    /// </summary>
    public static double[] Backward(double[] dOutput, double[] x, double[] weight, double[] invRms, int rows, int dim, double[] dWeight)
    {
        Check(x, weight, rows, dim);
        if (dOutput.Length != rows * dim) throw new ArgumentException($"dOutput has {dOutput.Length} elements, expected {rows}x{dim}", nameof(dOutput));
        if (dWeight.Length != dim) throw new ArgumentException($"dWeight has {dWeight.Length} elements, expected {dim}", nameof(dWeight));
        var dx = new double[rows * dim];
        for (int n = 0; n < rows; n++)
        {
            double r = invRms[n];
            double dot = 0;
            for (int d = 0; d < dim; d++) dot += dOutput[n * dim + d] * weight[d] * x[n * dim + d];
            for (int d = 0; d < dim; d++)
            {
                int i = n * dim + d;
                dx[i] = r * weight[d] * dOutput[i] - r * r * r / dim * x[i] * dot;
                dWeight[d] += dOutput[i] * x[i] * r;
            }
        }
        return dx;
    }

    private static void Check(double[] x, double[] weight, int rows, int dim)
    {
        if (x.Length != rows * dim) throw new ArgumentException($"x has {x.Length} elements, expected {rows}x{dim}", nameof(x));
        if (weight.Length != dim) throw new ArgumentException($"weight has {weight.Length} elements, expected {dim}", nameof(weight));
    }
}

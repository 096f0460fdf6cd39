namespace OR1.Tests.Support;

/// <summary>
/// Checks a backend's fp32 backward against central finite differences of its own fp32 forward.
/// Per-element differences in fp32 are mostly rounding noise, so the check is directional: for a random
/// direction d, (f(x + h d) - f(x - h d)) / 2h must match grad · d. Over several directions this
/// catches wrong signs, wrong factors and missing terms while staying well above fp32 noise.
/// </summary>
public static class FloatGradientCheck
{
    /// <param name="f">Scalar objective of the forward, evaluated by the backend (e.g. a random projection of its output).</param>
    /// <param name="x">Point at which the gradient was taken.</param>
    /// <param name="gradient">The backend's analytic gradient of f at x.</param>
    /// <param name="what">Label for failure messages.</param>
    /// <param name="h">Step (relative to a unit-RMS direction).</param>
    /// <param name="relTol">Allowed error relative to |grad| |d| (the scale of the directional derivative).</param>
    /// <param name="directions">How many random directions to try.</param>
    /// <param name="seed">Seed of the first direction.</param>
    public static void Directional(Func<float[], double> f, float[] x, float[] gradient, string what,
        double h = 1e-2, double relTol = 2e-3, int directions = 3, int seed = 7)
    {
        Assert.That(gradient, Has.Length.EqualTo(x.Length), $"{what}: gradient length");
        double gradNorm = Math.Sqrt(gradient.Sum(g => (double)g * g));
        for (int trial = 0; trial < directions; trial++)
        {
            var d = TestData.Normal(x.Length, seed + 31 * trial);
            double dNorm = Math.Sqrt(d.Sum(v => (double)v * v));
            var plus = new float[x.Length];
            var minus = new float[x.Length];
            for (int i = 0; i < x.Length; i++)
            {
                plus[i] = (float)(x[i] + h * d[i]);
                minus[i] = (float)(x[i] - h * d[i]);
            }
            // Use the perturbation actually representable in fp32, not the intended one.
            double analytic = 0;
            for (int i = 0; i < x.Length; i++) analytic += gradient[i] * ((double)plus[i] - minus[i]) / 2;
            double numeric = (f(plus) - f(minus)) / 2;
            double scale = gradNorm * dNorm * h;
            Assert.That(Math.Abs(numeric - analytic), Is.LessThanOrEqualTo(relTol * scale + 1e-9),
                $"{what}: direction {trial}: finite difference {numeric:G9} vs analytic {analytic:G9} (scale {scale:G3})");
        }
    }

    /// <summary>Sum of projection[i] * output[i] in double.</summary>
    public static double Project(float[] output, float[] projection)
    {
        double sum = 0;
        for (int i = 0; i < output.Length; i++) sum += (double)output[i] * projection[i];
        return sum;
    }
}

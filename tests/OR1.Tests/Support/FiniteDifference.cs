namespace OR1.Tests.Support;

/// <summary>Central finite differences in double, the ground truth every hand-written backward is checked against.</summary>
public static class FiniteDifference
{
    /// <summary>df/dx_i = (f(x + h e_i) - f(x - h e_i)) / 2h for every i. <paramref name="x"/> is not modified.</summary>
    public static double[] Gradient(Func<double[], double> f, double[] x, double h)
    {
        ArgumentNullException.ThrowIfNull(f);
        ArgumentNullException.ThrowIfNull(x);
        // Perturb a private copy: f may keep or compare against the caller's array.
        var probe = (double[])x.Clone();
        var gradient = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            probe[i] = x[i] + h;
            double plus = f(probe);
            probe[i] = x[i] - h;
            double minus = f(probe);
            probe[i] = x[i];
            gradient[i] = (plus - minus) / (2 * h);
        }
        return gradient;
    }

    /// <summary>The derivative of f along <paramref name="direction"/>: (f(x + h d) - f(x - h d)) / 2h.</summary>
    public static double Directional(Func<double[], double> f, double[] x, double[] direction, double h)
    {
        ArgumentNullException.ThrowIfNull(f);
        if (direction.Length != x.Length) throw new ArgumentException($"direction has {direction.Length} elements, x has {x.Length}", nameof(direction));
        var plus = new double[x.Length];
        var minus = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            plus[i] = x[i] + h * direction[i];
            minus[i] = x[i] - h * direction[i];
        }
        return (f(plus) - f(minus)) / (2 * h);
    }

    /// <summary>
    /// The gradient of the scalar sum_j cotangent[j] * f(x)[j] with respect to x: what a backward given
    /// dOutput = cotangent must return for a vector-valued forward f.
    /// </summary>
    public static double[] VectorJacobianProduct(Func<double[], double[]> f, double[] x, double[] cotangent, double h)
    {
        ArgumentNullException.ThrowIfNull(f);
        return Gradient(p => Dot(f(p), cotangent), x, h);
    }

    /// <summary>sum_i a[i] b[i] (lengths must match).</summary>
    public static double Dot(double[] a, double[] b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"lengths differ: {a.Length} and {b.Length}", nameof(b));
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }
}

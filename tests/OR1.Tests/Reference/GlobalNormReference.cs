namespace OR1.Tests.Reference;

/// <summary>The L2 norm of all elements of several arrays together (the gradient-clipping norm).</summary>
public static class GlobalNormReference
{
    /// <summary>sqrt(sum over every array and element of x^2).</summary>
    public static double Norm(params IEnumerable<double[]> arrays)
    {
        double sum = 0;
        foreach (double[] array in arrays)
        {
            foreach (double x in array) sum += x * x;
        }
        return Math.Sqrt(sum);
    }
}

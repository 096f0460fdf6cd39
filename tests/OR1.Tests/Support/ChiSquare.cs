namespace OR1.Tests.Support;

/// <summary>
/// Pearson's chi-square goodness-of-fit test of observed category counts against exact probabilities, for sampler
/// tests: deterministic data (a fixed seed) give a fixed p-value, so a threshold like 1e-6 never fails by chance once
/// it passes, while a sampler that draws from a different distribution (a token too many or too few at a filtering
/// boundary) fails it by hundreds of orders of magnitude at the sample sizes used.
/// </summary>
public static class ChiSquare
{
    /// <summary>The statistic sum (observed - expected)^2 / expected over the categories of positive probability, and its degrees of freedom.</summary>
    public static (double Statistic, int DegreesOfFreedom) Statistic(int[] counts, double[] probabilities)
    {
        long n = counts.Sum(c => (long)c);
        double statistic = 0;
        int categories = 0;
        for (int j = 0; j < probabilities.Length; j++)
        {
            if (probabilities[j] <= 0) continue;
            double expected = n * probabilities[j];
            statistic += (counts[j] - expected) * (counts[j] - expected) / expected;
            categories++;
        }
        return (statistic, Math.Max(1, categories - 1));
    }

    /// <summary>P(X >= statistic) for X chi-square distributed with the given degrees of freedom.</summary>
    public static double PValue(double statistic, int degreesOfFreedom) => UpperRegularizedGamma(degreesOfFreedom / 2.0, statistic / 2.0);

    /// <summary>Q(a, x) = Gamma(a, x) / Gamma(a): a series for x &lt; a + 1, else a continued fraction (Lentz).</summary>
    public static double UpperRegularizedGamma(double a, double x)
    {
        if (x <= 0) return 1;
        double logPrefix = -x + a * Math.Log(x) - LogGamma(a);
        if (x < a + 1)
        {
            double term = 1 / a, sum = term;
            for (int k = 1; k < 10_000 && Math.Abs(term) > Math.Abs(sum) * 1e-16; k++)
            {
                term *= x / (a + k);
                sum += term;
            }
            return Math.Max(0, 1 - sum * Math.Exp(logPrefix));
        }
        const double tiny = 1e-300;
        double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
        for (int i = 1; i < 10_000; i++)
        {
            double an = -i * (i - a);
            b += 2;
            d = an * d + b;
            if (Math.Abs(d) < tiny) d = tiny;
            c = b + an / c;
            if (Math.Abs(c) < tiny) c = tiny;
            d = 1 / d;
            double delta = d * c;
            h *= delta;
            if (Math.Abs(delta - 1) < 1e-16) break;
        }
        return Math.Exp(logPrefix) * h;
    }

    /// <summary>log Gamma(x) for x &gt; 0 (Lanczos, g = 7, nine coefficients; about 15 digits).</summary>
    public static double LogGamma(double x)
    {
        double[] g =
        [
            0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
            12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
        ];
        if (x < 0.5) return Math.Log(Math.PI / Math.Abs(Math.Sin(Math.PI * x))) - LogGamma(1 - x);
        x -= 1;
        double sum = g[0];
        for (int i = 1; i < g.Length; i++) sum += g[i] / (x + i);
        double t = x + 7.5;
        return 0.5 * Math.Log(2 * Math.PI) + (x + 0.5) * Math.Log(t) - t + Math.Log(sum);
    }
}

using System.Numerics;

namespace OR1.Grpo.Rewards.Math;

/// <summary>
/// A number that is exact (a <see cref="Rational"/>) as long as it can be, and a double once it cannot
/// (radicals, pi, fractional powers, results too large to keep exactly). Arithmetic never builds a number of
/// more than <see cref="MaxBits"/> bits: <c>9^9^9^9</c> becomes infinity in a few microseconds instead of
/// exhausting memory.
/// </summary>
internal readonly struct NumericValue
{
    /// <summary>Exact results larger than this many bits fall back to doubles.</summary>
    public const long MaxBits = 16_384;

    private NumericValue(Rational? exact, double approx)
    {
        Exact = exact;
        Approx = approx;
    }

    public Rational? Exact { get; }

    public double Approx { get; }

    public bool IsExact => Exact.HasValue;

    public bool IsFinite => IsExact || double.IsFinite(Approx);

    public static NumericValue Of(Rational value) =>
        value.Bits > MaxBits ? new(null, value.ToDouble()) : new(value, value.ToDouble());

    public static NumericValue Of(double value) => new(null, value);

    public static NumericValue Of(long value) => Of(new Rational(value));

    public static NumericValue Negate(NumericValue a) => a.Exact is { } e ? Of(-e) : Of(-a.Approx);

    public static NumericValue Add(NumericValue a, NumericValue b) =>
        a.Exact is { } x && b.Exact is { } y ? Of(x + y) : Of(a.Approx + b.Approx);

    public static NumericValue Subtract(NumericValue a, NumericValue b) =>
        a.Exact is { } x && b.Exact is { } y ? Of(x - y) : Of(a.Approx - b.Approx);

    public static NumericValue Multiply(NumericValue a, NumericValue b) =>
        a.Exact is { } x && b.Exact is { } y ? Of(x * y) : Of(a.Approx * b.Approx);

    public static NumericValue Divide(NumericValue a, NumericValue b)
    {
        if (a.Exact is { } x && b.Exact is { } y) return y.Sign == 0 ? Of(double.NaN) : Of(x / y);
        return Of(a.Approx / b.Approx);
    }

    public static NumericValue Power(NumericValue a, NumericValue b)
    {
        if (a.Exact is { } x && b.Exact is { } y)
        {
            if (y.IsInteger) return IntegerPower(x, y.Numerator);
            // A rational exponent p/q: exact when x is a perfect q-th power (8^{2/3} = 4).
            if (y.Denominator <= 64 && x.Sign >= 0 && RootExact(x, (int)y.Denominator) is { } root)
                return IntegerPower(root, y.Numerator);
        }
        if (a.Exact is { } baseExact && baseExact.Sign < 0 && b.Exact is { } e && !e.IsInteger && !e.Denominator.IsEven)
        {
            // An odd root of a negative number is real: (-8)^{1/3} = -2.
            double magnitude = System.Math.Pow(-a.Approx, b.Approx);
            return Of(e.Numerator.IsEven ? magnitude : -magnitude);
        }
        return Of(System.Math.Pow(a.Approx, b.Approx));
    }

    private static NumericValue IntegerPower(Rational x, BigInteger k)
    {
        if (k.IsZero) return x.Sign == 0 ? Of(double.NaN) : Of(Rational.One);
        if (x.Sign == 0) return k.Sign > 0 ? Of(Rational.Zero) : Of(double.NaN);
        if (x.Numerator.IsOne && x.Denominator.IsOne) return Of(Rational.One);
        if (x.Numerator == BigInteger.MinusOne && x.Denominator.IsOne) return Of(k.IsEven ? Rational.One : -Rational.One);
        // Exact only when the result stays small: bits(x) * |k| <= MaxBits.
        var magnitude = BigInteger.Abs(k);
        if (magnitude <= MaxBits && x.Bits * (long)magnitude <= MaxBits) return Of(Rational.Pow(x, (int)k));
        return Of(System.Math.Pow(x.ToDouble(), (double)k));
    }

    /// <summary>The q-th root of <paramref name="x"/> when exact (both parts perfect powers), else the approximation.</summary>
    public static NumericValue Root(NumericValue x, int q)
    {
        if (q < 1) return Of(double.NaN);
        if (x.Exact is { } e)
        {
            if (e.Sign < 0)
            {
                if (q % 2 == 0) return Of(double.NaN);
                return Negate(Root(Of(-e), q));
            }
            if (RootExact(e, q) is { } root) return Of(root);
        }
        if (x.Approx < 0) return q % 2 == 0 ? Of(double.NaN) : Of(-System.Math.Pow(-x.Approx, 1.0 / q));
        return Of(q == 2 ? System.Math.Sqrt(x.Approx) : System.Math.Pow(x.Approx, 1.0 / q));
    }

    private static Rational? RootExact(Rational x, int q) =>
        Rational.TryIntegerRoot(x.Numerator, q, out var n) && Rational.TryIntegerRoot(x.Denominator, q, out var d)
            ? new Rational(n, d)
            : null;

    /// <summary>n! for a small non-negative integer n (exact up to 1000!), otherwise not a number.</summary>
    public static NumericValue Factorial(NumericValue x, Deadline deadline)
    {
        if (x.Exact is not { IsInteger: true } e || e.Sign < 0 || e.Numerator > 1000) return Of(double.NaN);
        var result = BigInteger.One;
        for (int i = 2; i <= (int)e.Numerator; i++)
        {
            deadline.Check();
            result *= i;
        }
        return Of(new Rational(result));
    }

    /// <summary>
    /// The binomial coefficient n choose k for integers 0 &lt;= k (0 when k &gt; n &gt;= 0), exact while it stays under
    /// <see cref="MaxBits"/> bits and infinite past that; not a number for a negative or non-integer n or k.
    /// </summary>
    public static NumericValue Binomial(NumericValue n, NumericValue k, Deadline deadline)
    {
        if (n.Exact is not { IsInteger: true } ne || k.Exact is not { IsInteger: true } ke || ne.Sign < 0 || ke.Sign < 0)
            return Of(double.NaN);
        BigInteger top = ne.Numerator, choose = ke.Numerator;
        if (choose > top) return Of(Rational.Zero);
        if (choose * 2 > top) choose = top - choose;
        var result = BigInteger.One;
        // C(n, i) = C(n, i - 1) * (n - i + 1) / i stays an integer at every step.
        for (var i = BigInteger.One; i <= choose; i++)
        {
            deadline.Check();
            result = result * (top - i + 1) / i;
            if (result.GetBitLength() > MaxBits) return Of(double.PositiveInfinity);
        }
        return Of(new Rational(result));
    }

    /// <summary>
    /// Whether <paramref name="a"/> and <paramref name="b"/> agree after rounding each to <paramref name="decimals"/>
    /// decimal places (half to even), as math_verify compares a decimal answer with anything numeric
    /// (its float_rounding, 6 by default): <c>6.283185</c> equals <c>2\pi</c>, <c>3.14</c> does not equal <c>\pi</c>.
    /// Exact values round exactly; others through their double.
    /// </summary>
    public static bool AreEqualRounded(NumericValue a, NumericValue b, int decimals)
    {
        if (!a.IsFinite || !b.IsFinite) return false;
        if (a.Exact is { } x && b.Exact is { } y) return RoundExact(x, decimals) == RoundExact(y, decimals);
        double p = a.Approx, q = b.Approx;
        double scale = System.Math.Pow(10, decimals);
        // Beyond 2^53 / 10^decimals a double has no digits left after the point to round.
        if (System.Math.Max(System.Math.Abs(p), System.Math.Abs(q)) * scale > 9.0e15) return p == q;
        return System.Math.Round(p * scale, MidpointRounding.ToEven) == System.Math.Round(q * scale, MidpointRounding.ToEven);
    }

    /// <summary>x * 10^decimals rounded half to even, exactly.</summary>
    private static BigInteger RoundExact(Rational x, int decimals)
    {
        BigInteger scaled = x.Numerator * BigInteger.Pow(10, decimals);
        BigInteger quotient = BigInteger.DivRem(scaled, x.Denominator, out BigInteger remainder);
        int half = (BigInteger.Abs(remainder) * 2).CompareTo(x.Denominator);
        if (half > 0 || half == 0 && !quotient.IsEven) quotient += remainder.Sign;
        return quotient;
    }

    /// <summary>
    /// Equality: exactly when both are exact; otherwise |a - b| &lt;= tolerance * max(|a|, |b|) (with an absolute
    /// floor of tolerance * 1e-3 near zero). Infinite or NaN values are never equal.
    /// </summary>
    public static bool AreEqual(NumericValue a, NumericValue b, double relativeTolerance)
    {
        if (a.Exact is { } x && b.Exact is { } y) return x.Equals(y);
        double p = a.Approx, q = b.Approx;
        if (!double.IsFinite(p) || !double.IsFinite(q)) return false;
        double scale = System.Math.Max(System.Math.Abs(p), System.Math.Abs(q));
        return System.Math.Abs(p - q) <= relativeTolerance * System.Math.Max(scale, 1e-3);
    }

    public override string ToString() => Exact?.ToString() ?? Approx.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
}

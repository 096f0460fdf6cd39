using System.Globalization;
using System.Numerics;

namespace OR1.Grpo.Rewards.Math;

/// <summary>An exact fraction of <see cref="BigInteger"/>s, always reduced, with a positive denominator.</summary>
internal readonly struct Rational : IEquatable<Rational>
{
    public Rational(BigInteger numerator, BigInteger denominator)
    {
        if (denominator.IsZero) throw new DivideByZeroException();
        if (denominator.Sign < 0) (numerator, denominator) = (-numerator, -denominator);
        var gcd = BigInteger.GreatestCommonDivisor(numerator, denominator);
        if (!gcd.IsOne && !gcd.IsZero) (numerator, denominator) = (numerator / gcd, denominator / gcd);
        Numerator = numerator;
        Denominator = denominator.IsZero ? BigInteger.One : denominator;
    }

    public Rational(BigInteger integer) : this(integer, BigInteger.One) { }

    public BigInteger Numerator { get; }

    /// <summary>Always positive.</summary>
    public BigInteger Denominator { get; }

    public static Rational Zero => new(BigInteger.Zero);

    public static Rational One => new(BigInteger.One);

    public bool IsInteger => Denominator.IsOne;

    public int Sign => Numerator.Sign;

    /// <summary>The larger bit length of numerator and denominator: the cost of arithmetic on it.</summary>
    public long Bits => System.Math.Max(Numerator.GetBitLength(), Denominator.GetBitLength());

    public static Rational operator +(Rational a, Rational b) =>
        new(a.Numerator * b.Denominator + b.Numerator * a.Denominator, a.Denominator * b.Denominator);

    public static Rational operator -(Rational a, Rational b) =>
        new(a.Numerator * b.Denominator - b.Numerator * a.Denominator, a.Denominator * b.Denominator);

    public static Rational operator -(Rational a) => new(-a.Numerator, a.Denominator);

    public static Rational operator *(Rational a, Rational b) =>
        new(a.Numerator * b.Numerator, a.Denominator * b.Denominator);

    public static Rational operator /(Rational a, Rational b) =>
        new(a.Numerator * b.Denominator, a.Denominator * b.Numerator);

    /// <summary><paramref name="a"/> to an integer power that the caller has checked is small enough.</summary>
    public static Rational Pow(Rational a, int exponent)
    {
        if (exponent < 0) return One / Pow(a, -exponent);
        return new(BigInteger.Pow(a.Numerator, exponent), BigInteger.Pow(a.Denominator, exponent));
    }

    /// <summary>The nearest double, also for numerator and denominator far outside double's range.</summary>
    public double ToDouble()
    {
        if (Numerator.IsZero) return 0;
        long nb = Numerator.GetBitLength(), db = Denominator.GetBitLength();
        int ns = (int)System.Math.Max(0, nb - 64), ds = (int)System.Math.Max(0, db - 64);
        double n = (double)(Numerator >> ns), d = (double)(Denominator >> ds);
        long scale = (long)ns - ds;
        if (scale > 4096) return n > 0 ? double.PositiveInfinity : double.NegativeInfinity;
        if (scale < -4096) return 0;
        return System.Math.ScaleB(n / d, (int)scale);
    }

    /// <summary>The exact integer q-th root of a non-negative integer, if there is one (small inputs only).</summary>
    public static bool TryIntegerRoot(BigInteger value, int q, out BigInteger root)
    {
        root = BigInteger.Zero;
        if (value.Sign < 0 || q < 1 || value.GetBitLength() > 4096) return false;
        if (value.IsZero || value.IsOne || q == 1) { root = value; return true; }
        // Newton's method on integers from an upper bound: r_{k+1} = ((q-1) r_k + v / r_k^(q-1)) / q.
        var r = BigInteger.One << (int)((value.GetBitLength() + q - 1) / q);
        for (int guard = 0; guard < 10_000; guard++)
        {
            var next = ((q - 1) * r + value / BigInteger.Pow(r, q - 1)) / q;
            if (next >= r) break;
            r = next;
        }
        if (BigInteger.Pow(r, q) != value) return false;
        root = r;
        return true;
    }

    public bool Equals(Rational other) => Numerator == other.Numerator && Denominator == other.Denominator;

    public override bool Equals(object? obj) => obj is Rational other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(Numerator, Denominator);

    public override string ToString() =>
        IsInteger ? Numerator.ToString(CultureInfo.InvariantCulture)
                  : $"{Numerator.ToString(CultureInfo.InvariantCulture)}/{Denominator.ToString(CultureInfo.InvariantCulture)}";
}

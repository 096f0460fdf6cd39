using System.Numerics;

namespace OR1.Grpo.Rewards.Code;

/// <summary>
/// The stdin/stdout check (docs/RECIPE.md "Rewards"): both texts are stripped, split into lines (\n, \r\n or \r)
/// and every line is stripped; the outputs match when they have the same lines, where two lines are equal
/// when they are the same text or have the same whitespace-separated tokens with numeric tokens compared as
/// exact decimals ("1.50" equals "1.5" and "15e-1"; "0.333" does not equal "0.3333").
/// </summary>
public static class OutputComparer
{
    private const int ShownChars = 80;

    /// <summary>Whether <paramref name="actual"/> matches <paramref name="expected"/>; when not, the first difference.</summary>
    public static bool Matches(string actual, string expected, out string difference)
    {
        var got = Lines(actual);
        var want = Lines(expected);
        int count = System.Math.Max(got.Length, want.Length);
        for (int i = 0; i < count; i++)
        {
            if (i < got.Length && i < want.Length && LinesEqual(got[i], want[i])) continue;
            string expectedLine = i < want.Length ? $"'{Show(want[i])}'" : "the end of the output";
            string actualLine = i < got.Length ? $"'{Show(got[i])}'" : "the end of the output";
            difference = $"line {i + 1}: expected {expectedLine}, got {actualLine}";
            return false;
        }
        difference = "";
        return true;
    }

    /// <summary>Whether two stripped lines are equal as text or token by token (numbers as decimals).</summary>
    public static bool LinesEqual(string actual, string expected)
    {
        if (string.Equals(actual, expected, StringComparison.Ordinal)) return true;
        var a = actual.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        var e = expected.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        if (a.Length != e.Length) return false;
        for (int i = 0; i < a.Length; i++)
        {
            if (string.Equals(a[i], e[i], StringComparison.Ordinal)) continue;
            if (!DecimalsEqual(a[i], e[i])) return false;
        }
        return true;
    }

    /// <summary>Whether two tokens are decimal numbers ([+-]digits[.digits][e[+-]digits]) with the same exact value.</summary>
    public static bool DecimalsEqual(string a, string b) =>
        TryCanonical(a, out var x) && TryCanonical(b, out var y) && x == y;

    private static string[] Lines(string text) =>
        text.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n').Trim().Split('\n').Select(l => l.Trim()).ToArray();

    /// <summary>A decimal as (sign, significant digits without leading or trailing zeros, exponent of the last digit).</summary>
    private static bool TryCanonical(string token, out (int Sign, BigInteger Digits, long Exponent) value)
    {
        value = default;
        var s = token.AsSpan();
        if (s.Length == 0 || s.Length > 4096) return false;
        int sign = 1, i = 0;
        if (s[0] is '+' or '-')
        {
            sign = s[0] == '-' ? -1 : 1;
            i = 1;
        }
        int intStart = i;
        while (i < s.Length && char.IsAsciiDigit(s[i])) i++;
        var intPart = s[intStart..i];
        var fracPart = ReadOnlySpan<char>.Empty;
        if (i < s.Length && s[i] == '.')
        {
            int fracStart = ++i;
            while (i < s.Length && char.IsAsciiDigit(s[i])) i++;
            fracPart = s[fracStart..i];
        }
        if (intPart.Length == 0 && fracPart.Length == 0) return false;
        long exponent = 0;
        if (i < s.Length && s[i] is 'e' or 'E')
        {
            i++;
            int expStart = i;
            if (i < s.Length && s[i] is '+' or '-') i++;
            int digitsStart = i;
            while (i < s.Length && char.IsAsciiDigit(s[i])) i++;
            if (i == digitsStart || i - digitsStart > 9) return false;
            exponent = long.Parse(s[expStart..i], System.Globalization.CultureInfo.InvariantCulture);
        }
        if (i != s.Length) return false;

        string digits = string.Concat(intPart, fracPart).TrimStart('0');
        exponent -= fracPart.Length;
        if (digits.Length == 0)
        {
            value = (0, BigInteger.Zero, 0); // every spelling of zero, signed or not
            return true;
        }
        int trailing = digits.Length - digits.TrimEnd('0').Length;
        digits = digits[..^trailing];
        exponent += trailing;
        value = (sign, BigInteger.Parse(digits, System.Globalization.CultureInfo.InvariantCulture), exponent);
        return true;
    }

    private static string Show(string line) => line.Length <= ShownChars ? line : line[..(ShownChars - 3)] + "...";
}

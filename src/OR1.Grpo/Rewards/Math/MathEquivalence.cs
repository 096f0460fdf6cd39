namespace OR1.Grpo.Rewards.Math;

/// <summary>
/// Decides whether two answers are the same, after <see cref="LatexNormalizer.Normalize(string)"/>. In order:
/// <list type="number">
/// <item>equal normalised strings (words compare case-insensitively);</item>
/// <item>the shape (<see cref="AnswerShape"/>): tuples and intervals compare element by element in order with the
/// same brackets (<c>[1,3)</c> is not <c>[1,3]</c>, <c>(1,2)</c> is not <c>(2,1)</c>); sets, bare lists
/// (<c>1,2</c>, <c>x=1 \text{ or } x=2</c>, <c>1\pm\sqrt2</c>) and unions compare as multisets; a bare list also
/// matches a parenthesised tuple in the same order; matrices compare cell by cell;</item>
/// <item>numbers: exact rationals when both sides are (<c>0.5</c> = <c>\frac{1}{2}</c> = <c>.5</c>,
/// <c>025</c> = <c>25</c>, <c>1/3</c> ≠ <c>0.33</c>), otherwise doubles within a relative
/// <see cref="RelativeTolerance"/> (<c>2\sqrt{3}</c> = <c>\sqrt{12}</c>, <c>\frac{\pi}{2}</c> = <c>0.5\pi</c>); when one
/// side is a plain decimal, both rounded to <see cref="DecimalPlaces"/> places as math_verify does (<c>6.283185</c> =
/// <c>2\pi</c>, <c>3.14</c> ≠ <c>\pi</c>);</item>
/// <item>equations: <c>x = 5</c> against <c>5</c> compares the right-hand side; two equations compare side by side
/// (either orientation) or as proportional <c>lhs - rhs</c> (<c>2x = 10</c> = <c>x = 5</c>);</item>
/// <item>inequalities in one variable read as intervals (<c>x &gt; 2</c> = <c>(2,\infty)</c>, <c>1 \le x &lt; 3</c> =
/// <c>[1,3)</c>; "x &lt; 1 or x &gt; 2" = <c>(-\infty,1)\cup(2,\infty)</c>);</item>
/// <item>expressions with variables: equal at several fixed pseudo-random points with the same variables
/// (<c>2x+1</c> = <c>1+2x</c>); not tried on word-like text, so "no" never equals "on".</item>
/// </list>
/// </summary>
public static class MathEquivalence
{
    /// <summary>Relative tolerance for comparisons that are not exact (radicals, pi, decimals against them).</summary>
    public const double RelativeTolerance = 1e-9;

    /// <summary>
    /// Decimal places both sides are rounded to when one of them is a plain decimal number (math_verify's
    /// float_rounding): <c>1.414214</c> = <c>\sqrt{2}</c>, <c>0.333333</c> = <c>\frac{1}{3}</c>, <c>1.4142</c> ≠ <c>\sqrt{2}</c>.
    /// </summary>
    public const int DecimalPlaces = 6;

    private const double SymbolicTolerance = 1e-8;
    private const int MaxElements = 200;
    private const int MaxRecursion = 12;

    /// <summary>Whether <paramref name="answer"/> and <paramref name="expected"/> are equivalent (both are normalised first).</summary>
    public static bool AreEquivalent(string answer, string expected) => AreEquivalent(answer, expected, out _);

    /// <summary>As <see cref="AreEquivalent(string, string)"/>, also naming the rule that matched (e.g. "numeric").</summary>
    public static bool AreEquivalent(string answer, string expected, out string rule)
    {
        try
        {
            return AreEquivalent(answer, expected, Deadline.None, MathRewardOptions.Default.MaxNumberDigits, out rule);
        }
        catch (Exception e) when (e is MathParseException or MathTimeoutException)
        {
            rule = "";
            return false;
        }
    }

    internal static bool AreEquivalent(string answer, string expected, Deadline deadline, int maxDigits, out string rule)
    {
        string a = LatexNormalizer.Normalize(answer, deadline);
        string b = LatexNormalizer.Normalize(expected, deadline);
        return AreEquivalentNormalized(a, b, deadline, maxDigits, out rule);
    }

    internal static bool AreEquivalentNormalized(string a, string b, Deadline deadline, int maxDigits, out string rule) =>
        new Comparer(deadline, maxDigits).Equivalent(a, b, 0, out rule);

    private sealed class Comparer(Deadline deadline, int maxDigits)
    {
        private readonly Dictionary<string, MathExpression?> _parsed = new(StringComparer.Ordinal);

        public bool Equivalent(string a, string b, int depth, out string rule)
        {
            deadline.CheckNow();
            rule = "string";
            if (a == b) return a.Length > 0;
            if (a.Length == 0 || b.Length == 0 || depth > MaxRecursion) return false;

            var sa = StructuredAnswer.Parse(a, deadline);
            var sb = StructuredAnswer.Parse(b, deadline);
            if (sa.Shape == AnswerShape.Scalar && sb.Shape == AnswerShape.Scalar) return ScalarEquivalent(a, b, depth, out rule);

            if (sa.Shape == AnswerShape.Sequence && sb.Shape == AnswerShape.Sequence)
            {
                rule = sa.Open == '(' && sa.Close == ')' ? "tuple" : "interval";
                return sa.Open == sb.Open && sa.Close == sb.Close && InOrder(sa.Elements, sb.Elements, depth);
            }
            if (IsTupleLike(sa, sb) || IsTupleLike(sb, sa))
            {
                rule = "tuple";
                return InOrder(sa.Elements, sb.Elements, depth);
            }
            if (IsUnordered(sa.Shape) && IsUnordered(sb.Shape))
            {
                rule = "set";
                return AsMultisets(sa.Elements, sb.Elements, depth);
            }
            if (sa.Shape == AnswerShape.Union && sb.Shape is AnswerShape.Union or AnswerShape.List
                || sb.Shape == AnswerShape.Union && sa.Shape == AnswerShape.List)
            {
                rule = "union";
                return AsMultisets(sa.Elements, sb.Elements, depth);
            }
            if (sa.Shape == AnswerShape.Matrix && sb.Shape == AnswerShape.Matrix)
            {
                rule = "matrix";
                return sa.Columns == sb.Columns && InOrder(sa.Elements, sb.Elements, depth);
            }
            // "x > 2" against "(2, \infty)": an inequality read as an interval.
            if (sa.Shape == AnswerShape.Sequence && sb.Shape == AnswerShape.Scalar && Inequality.AsInterval(b, deadline) is { } ib)
            {
                bool same = Equivalent(a, ib, depth + 1, out string inner);
                rule = "inequality, " + inner;
                return same;
            }
            if (sb.Shape == AnswerShape.Sequence && sa.Shape == AnswerShape.Scalar && Inequality.AsInterval(a, deadline) is { } ia)
            {
                bool same = Equivalent(ia, b, depth + 1, out string inner);
                rule = "inequality, " + inner;
                return same;
            }
            // "x = (1, 2)" against "(1, 2)": a scalar equation whose right side is the structure.
            if (sa.Shape == AnswerShape.Scalar && RightHandSide(a) is { } ra) return Equivalent(ra, b, depth + 1, out rule);
            if (sb.Shape == AnswerShape.Scalar && RightHandSide(b) is { } rb) return Equivalent(a, rb, depth + 1, out rule);
            rule = "shape";
            return false;
        }

        private static bool IsUnordered(AnswerShape shape) => shape is AnswerShape.Set or AnswerShape.List;

        private static bool IsTupleLike(StructuredAnswer tuple, StructuredAnswer list) =>
            tuple.Shape == AnswerShape.Sequence && tuple.Open == '(' && tuple.Close == ')' && list.Shape == AnswerShape.List;

        private bool InOrder(IReadOnlyList<string> a, IReadOnlyList<string> b, int depth)
        {
            if (a.Count != b.Count || a.Count > MaxElements) return false;
            for (int i = 0; i < a.Count; i++)
                if (!Equivalent(a[i], b[i], depth + 1, out _)) return false;
            return true;
        }

        private bool AsMultisets(IReadOnlyList<string> a, IReadOnlyList<string> b, int depth)
        {
            if (a.Count != b.Count || a.Count > MaxElements) return false;
            var used = new bool[b.Count];
            foreach (string x in a)
            {
                bool found = false;
                for (int j = 0; j < b.Count && !found; j++)
                {
                    if (used[j] || !Equivalent(x, b[j], depth + 1, out _)) continue;
                    used[j] = true;
                    found = true;
                }
                if (!found) return false;
            }
            return true;
        }

        private string? RightHandSide(string s)
        {
            var parts = StructuredAnswer.SplitTopLevel(s, "=", deadline);
            return parts.Count >= 2 && parts[^1].Length > 0 && parts[0].Length > 0 ? parts[^1] : null;
        }

        private bool ScalarEquivalent(string a, string b, int depth, out string rule)
        {
            rule = "string";
            if (IsWord(a) && IsWord(b)) return string.Equals(a, b, StringComparison.OrdinalIgnoreCase);

            var ea = Parse(a);
            var eb = Parse(b);
            if (ea is not null && eb is not null)
            {
                var va = new HashSet<string>(StringComparer.Ordinal);
                var vb = new HashSet<string>(StringComparer.Ordinal);
                ea.CollectVariables(va);
                eb.CollectVariables(vb);
                if (va.Count == 0 && vb.Count == 0)
                {
                    rule = "numeric";
                    var x = ea.Evaluate(deadline);
                    var y = eb.Evaluate(deadline);
                    if (NumericValue.AreEqual(x, y, RelativeTolerance)) return true;
                    if (!IsPlainDecimal(a) && !IsPlainDecimal(b)) return false;
                    rule = "numeric, rounded";
                    return NumericValue.AreEqualRounded(x, y, DecimalPlaces);
                }
                if (va.SetEquals(vb) && MayBeAlgebra(a, b))
                {
                    rule = "symbolic";
                    return SameFunction(ea, eb, va, proportional: false);
                }
            }

            var pa = StructuredAnswer.SplitTopLevel(a, "=", deadline);
            var pb = StructuredAnswer.SplitTopLevel(b, "=", deadline);
            if (pa.Count >= 2 && pb.Count == 1 && pa[^1].Length > 0 && pa[0].Length > 0)
            {
                bool ok = Equivalent(pa[^1], b, depth + 1, out string inner);
                rule = "equation, " + inner;
                return ok;
            }
            if (pb.Count >= 2 && pa.Count == 1 && pb[^1].Length > 0 && pb[0].Length > 0)
            {
                bool ok = Equivalent(a, pb[^1], depth + 1, out string inner);
                rule = "equation, " + inner;
                return ok;
            }
            if (pa.Count == 2 && pb.Count == 2)
            {
                rule = "equation";
                if (Equivalent(pa[0], pb[0], depth + 1, out _) && Equivalent(pa[1], pb[1], depth + 1, out _)) return true;
                if (Equivalent(pa[0], pb[1], depth + 1, out _) && Equivalent(pa[1], pb[0], depth + 1, out _)) return true;
                if (MayBeAlgebra(a, b) && Difference(pa) is { } fa && Difference(pb) is { } fb)
                {
                    var va = new HashSet<string>(StringComparer.Ordinal);
                    var vb = new HashSet<string>(StringComparer.Ordinal);
                    fa.CollectVariables(va);
                    fb.CollectVariables(vb);
                    if (va.Count > 0 && va.SetEquals(vb)) return SameFunction(fa, fb, va, proportional: true);
                }
                return false;
            }
            if (Inequality.AsInterval(a, deadline) is { } ia && Inequality.AsInterval(b, deadline) is { } ib)
            {
                bool same = Equivalent(ia, ib, depth + 1, out string inner);
                rule = "inequality, " + inner;
                return same;
            }
            return false;
        }

        private MathExpression? Difference(List<string> sides)
        {
            var left = Parse(sides[0]);
            var right = Parse(sides[1]);
            return left is null || right is null ? null : new SumExpression([(false, left), (true, right)]);
        }

        private MathExpression? Parse(string s)
        {
            if (_parsed.TryGetValue(s, out var cached)) return cached;
            var parsed = MathExpressionParser.TryParse(s, deadline, maxDigits);
            if (_parsed.Count < 1024) _parsed[s] = parsed;
            return parsed;
        }

        /// <summary>
        /// Whether two expressions agree at fixed pseudo-random points (or, when <paramref name="proportional"/>,
        /// differ by one constant non-zero factor there). Points where both are undefined are skipped.
        /// </summary>
        private bool SameFunction(MathExpression f, MathExpression g, ISet<string> variables, bool proportional)
        {
            var names = variables.OrderBy(v => v, StringComparer.Ordinal).ToArray();
            var random = new Random(20250607);
            double? ratio = null;
            int valid = 0;
            for (int point = 0; point < 8; point++)
            {
                deadline.CheckNow();
                var assignment = new Dictionary<string, double>(StringComparer.Ordinal);
                foreach (string name in names) assignment[name] = 0.25 + 3 * random.NextDouble();
                double x = f.Evaluate(deadline, assignment).Approx;
                double y = g.Evaluate(deadline, assignment).Approx;
                bool fx = double.IsFinite(x), fy = double.IsFinite(y);
                if (!fx && !fy) continue;
                if (fx != fy) return false;
                if (!proportional)
                {
                    if (!NumericValue.AreEqual(NumericValue.Of(x), NumericValue.Of(y), SymbolicTolerance)) return false;
                }
                else
                {
                    bool zx = System.Math.Abs(x) < 1e-12, zy = System.Math.Abs(y) < 1e-12;
                    if (zx && zy) continue;
                    if (zx != zy) return false;
                    double r = x / y;
                    if (ratio is null) ratio = r;
                    else if (!NumericValue.AreEqual(NumericValue.Of(r), NumericValue.Of(ratio.Value), SymbolicTolerance)) return false;
                }
                valid++;
            }
            return valid >= 3;
        }

        /// <summary>A decimal number literal and nothing else: <c>1.414214</c>, <c>-.5</c>, <c>2.5e3</c> (what math_verify parses as a Float).</summary>
        private static bool IsPlainDecimal(string s)
        {
            int i = s.Length > 0 && s[0] is '-' or '+' ? 1 : 0;
            int digits = 0;
            while (i < s.Length && char.IsAsciiDigit(s[i])) { i++; digits++; }
            if (i >= s.Length || s[i] != '.') return false;
            i++;
            while (i < s.Length && char.IsAsciiDigit(s[i])) { i++; digits++; }
            if (digits == 0) return false;
            if (i < s.Length && s[i] is 'e' or 'E')
            {
                i++;
                if (i < s.Length && s[i] is '-' or '+') i++;
                int exponentStart = i;
                while (i < s.Length && char.IsAsciiDigit(s[i])) i++;
                if (i == exponentStart) return false;
            }
            return i == s.Length;
        }

        /// <summary>Only letters (a word or name): compared as text, never as a product of variables.</summary>
        private static bool IsWord(string s) => s.Length > 1 && s.All(char.IsAsciiLetter);

        /// <summary>
        /// Whether variable-based comparison is sensible: something mathematical is present (a digit, operator or
        /// command) and no run of three or more plain letters (a word such as "odd", "yes", "none").
        /// </summary>
        private static bool MayBeAlgebra(string a, string b)
        {
            static bool NoWords(string s)
            {
                int run = 0;
                for (int i = 0; i < s.Length; i++)
                {
                    char c = s[i];
                    if (c == '\\')
                    {
                        while (i + 1 < s.Length && char.IsAsciiLetter(s[i + 1])) i++;
                        run = 0;
                    }
                    else if (char.IsAsciiLetter(c))
                    {
                        if (++run >= 3) return false;
                    }
                    else run = 0;
                }
                return true;
            }
            static bool HasMath(string s) => s.Any(c => char.IsAsciiDigit(c) || c is '+' or '-' or '*' or '/' or '^' or '\\' or '(');
            return NoWords(a) && NoWords(b) && (HasMath(a) || HasMath(b));
        }
    }
}

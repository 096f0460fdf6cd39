using System.Text;

namespace OR1.Grpo.Rewards.Math;

/// <summary>
/// Rewrites an answer string into a canonical LaTeX-ish form, so that equal answers written differently
/// become equal strings (or at least parse the same). In the spirit of the MATH-style scorers (verl's
/// <c>strip_string</c>, <c>math_dapo.normalize_final_answer</c>, Math-Verify's LaTeX cleanup), written from scratch:
/// <list type="bullet">
/// <item>Unicode: − – → <c>-</c>; × · ÷ π ∞ ° √ ≤ ≥ ≠ ∪ ± ∅ → their LaTeX commands.</item>
/// <item>Delimiters and spacing: <c>$</c>, <c>\( \) \[ \]</c>, <c>\left \right \big…</c>, <c>\displaystyle</c>,
/// <c>\! \, \; \: \quad ~</c> are dropped; all whitespace is removed except between a command name and a
/// following letter (<c>\pi r</c>).</item>
/// <item>Commands: <c>\dfrac \tfrac \cfrac</c> → <c>\frac</c>; <c>\dbinom \tbinom</c> and <c>{n \choose k}</c> → <c>\binom{n}{k}</c>; <c>\leq \geq \neq</c> → <c>\le \ge \ne</c>;
/// <c>\cdot \times</c> → <c>*</c>; <c>\div</c> → <c>/</c>; <c>\varnothing</c>, <c>\{\}</c> → <c>\emptyset</c>;
/// <c>bmatrix</c>/<c>array</c> → <c>pmatrix</c>.</item>
/// <item>Text: a trailing <c>\text{...}</c>/<c>\mbox</c>/<c>\mathrm</c> after something else is a unit and is
/// removed (also with <c>^2</c>/<c>^3</c>), as are trailing unit words (<c>5 cm</c>, <c>12 dollars</c>); other
/// text groups are unwrapped; "and"/"or" between answers become commas.</item>
/// <item>Degrees (<c>^\circ</c>, <c>^{\circ}</c>, °), percent (<c>\%</c>, <c>%</c>) and dollar signs are removed:
/// "50\%" normalises to "50", so it equals 50 and not 0.5 (as verl does).</item>
/// <item>Shorthand: <c>\frac12</c> → <c>\frac{1}{2}</c>, <c>\sqrt2</c> → <c>\sqrt{2}</c>, <c>a^{2}</c> → <c>a^2</c>.</item>
/// <item>Numbers: thousands separators (<c>1,000,000</c>, <c>1{,}000</c>, <c>1\,000</c>) are removed when the whole
/// answer is one such number (so the point <c>(100,200)</c> is kept); mixed numbers <c>2\frac{1}{2}</c> and
/// <c>2 1/2</c> become <c>\frac{5}{2}</c>.</item>
/// <item>Cleanup: a trailing period, redundant outer braces, a whole-answer <c>\boxed{}</c>, <c>(B)</c> → <c>B</c>,
/// <c>x \in S</c> → <c>S</c>, "infinity" → <c>\infty</c>, <c>(-\infty,\infty)</c> → <c>\mathbb{R}</c>.</item>
/// </list>
/// Equations (<c>x = 5</c>), leading zeros, <c>.5</c> and decimals are left to <see cref="MathEquivalence"/>.
/// </summary>
public static class LatexNormalizer
{
    private static readonly HashSet<string> DroppedCommands =
    [
        "left", "right", "bigl", "bigr", "Bigl", "Bigr", "big", "Big", "bigg", "Bigg", "biggl", "biggr", "Biggl",
        "Biggr", "middle", "displaystyle", "textstyle", "scriptstyle", "limits", "nolimits", "mathopen", "mathclose",
    ];

    private static readonly HashSet<string> SpaceCommands =
        ["quad", "qquad", "enspace", "thinspace", "medspace", "thickspace", "negthinspace", "space", "hfill"];

    private static readonly Dictionary<string, string> RenamedCommands = new()
    {
        ["dfrac"] = @"\frac", ["tfrac"] = @"\frac", ["cfrac"] = @"\frac", ["dbinom"] = @"\binom", ["tbinom"] = @"\binom",
        ["leq"] = @"\le", ["leqslant"] = @"\le", ["geq"] = @"\ge", ["geqslant"] = @"\ge", ["neq"] = @"\ne",
        ["varnothing"] = @"\emptyset", ["cdot"] = "*", ["times"] = "*", ["ast"] = "*", ["div"] = "/",
        ["degree"] = @"^\circ", ["degrees"] = @"^\circ", ["lbrace"] = @"\{", ["rbrace"] = @"\}",
        ["lbrack"] = "[", ["rbrack"] = "]", ["infin"] = @"\infty", ["varpi"] = @"\pi", ["to"] = @"\rightarrow",
        ["colon"] = ":", ["lt"] = "<", ["gt"] = ">", ["leqq"] = @"\le", ["geqq"] = @"\ge",
    };

    /// <summary>Commands whose braced argument is text: unwrapped, or dropped when they are a trailing unit.</summary>
    private static readonly HashSet<string> TextCommands =
    [
        "text", "textbf", "textit", "textrm", "textnormal", "textsf", "texttt", "textup", "mbox", "hbox", "mathrm",
        "mathbf", "mathit", "mathsf", "mathtt", "mathnormal", "boldsymbol", "bm", "operatorname", "emph",
    ];

    /// <summary>The text commands that may hold a unit (<c>5\text{ cm}</c>, <c>3\,\mathrm{kg}</c>).</summary>
    private static readonly HashSet<string> UnitCommands =
        ["text", "textrm", "textnormal", "textup", "mbox", "hbox", "mathrm", "textit"];

    private static readonly HashSet<string> UnitWords = new(StringComparer.OrdinalIgnoreCase)
    {
        "unit", "units", "square", "sq", "cubic", "cu", "mm", "cm", "m", "km", "meter", "meters", "metre", "metres",
        "kilometer", "kilometers", "inch", "inches", "foot", "feet", "ft", "yard", "yards", "yd", "mile", "miles",
        "mph", "kmh", "kph", "s", "sec", "secs", "second", "seconds", "min", "mins", "minute", "minutes", "hr", "hrs",
        "hour", "hours", "day", "days", "week", "weeks", "month", "months", "year", "years", "yr", "yrs", "dollar",
        "dollars", "cent", "cents", "degree", "degrees", "deg", "percent", "point", "points", "way", "ways",
        "student", "students", "people", "person", "g", "gram", "grams", "kg", "kilogram", "kilograms", "mg", "lb",
        "lbs", "pound", "pounds", "ounce", "ounces", "oz", "liter", "liters", "litre", "litres", "ml", "gallon",
        "gallons", "integer", "integers", "digit", "digits", "number", "numbers", "times", "radians", "rad",
    };

    /// <summary>The canonical form of <paramref name="answer"/> (never throws; no time limit).</summary>
    public static string Normalize(string answer)
    {
        try
        {
            return Normalize(answer, Deadline.None);
        }
        catch (MathParseException)
        {
            return answer.Trim();
        }
    }

    internal static string Normalize(string answer, Deadline deadline)
    {
        string s = MapUnicode(answer, deadline).Trim();
        s = UnwrapWholeBoxed(s, deadline);
        s = RewriteCommands(s, deadline);
        s = ChooseToBinom(s, deadline);
        s = RemoveTrailingTextUnits(s, deadline);
        s = UnwrapTextGroups(s, deadline);
        s = RemoveDegrees(s);
        s = RemoveTrailingUnitWords(s, deadline);
        s = WordsToCommas(s);
        s = MixedNumberWithSpace(s);
        s = RemoveWhitespace(s, deadline);
        s = CleanPunctuation(s);
        s = FixShorthandArguments(s, deadline);
        s = SimplifyScripts(s, deadline);
        s = MixedNumberWithFrac(s);
        s = StripWrappers(s, deadline);
        s = RemoveThousandsSeparators(s);
        s = NormalizeSpecialValues(s);
        s = NormalizeMatrices(s, deadline);
        return s;
    }

    private static string MapUnicode(string s, Deadline deadline)
    {
        var sb = new StringBuilder(s.Length + 8);
        foreach (char c in s)
        {
            deadline.Check();
            switch (c)
            {
                case '\u2212' or '\u2013' or '\u2012' or '\u2010' or '\u2011' or '\uFE63' or '\uFF0D': sb.Append('-'); break;
                case '\u00D7': sb.Append(@"\times "); break;
                case '\u00F7': sb.Append(@"\div "); break;
                case '\u00B7' or '\u22C5' or '\u2219': sb.Append(@"\cdot "); break;
                case '\u03C0': sb.Append(@"\pi "); break;
                case '\u221E': sb.Append(@"\infty "); break;
                case '\u00B0' or '\u2218': sb.Append(@"^\circ "); break;
                case '\u221A': sb.Append(@"\sqrt "); break;
                case '\u2264' or '\u2A7D': sb.Append(@"\le "); break;
                case '\u2265' or '\u2A7E': sb.Append(@"\ge "); break;
                case '\u2260': sb.Append(@"\ne "); break;
                case '\u222A': sb.Append(@"\cup "); break;
                case '\u2229': sb.Append(@"\cap "); break;
                case '\u00B1': sb.Append(@"\pm "); break;
                case '\u2205': sb.Append(@"\emptyset "); break;
                case '\uFF0C': sb.Append(','); break;
                case '\uFF08': sb.Append('('); break;
                case '\uFF09': sb.Append(')'); break;
                case '\uFF1A': sb.Append(':'); break;
                case '\u3002': sb.Append('.'); break;
                default: sb.Append(char.IsWhiteSpace(c) ? ' ' : c); break;
            }
        }
        return sb.ToString();
    }

    private static string UnwrapWholeBoxed(string s, Deadline deadline)
    {
        for (int guard = 0; guard < 8; guard++)
        {
            string? inner = null;
            foreach (string command in new[] { @"\boxed", @"\fbox" })
            {
                if (!s.StartsWith(command, StringComparison.Ordinal)) continue;
                int open = command.Length;
                while (open < s.Length && s[open] == ' ') open++;
                if (open < s.Length && s[open] == '{' && Braces.FindClosing(s, open, deadline) == s.Length - 1)
                    inner = s[(open + 1)..^1].Trim();
            }
            if (inner is null) return s;
            s = inner;
        }
        return s;
    }

    /// <summary>One pass over the commands: drops delimiters and spacing, renames synonyms.</summary>
    private static string RewriteCommands(string s, Deadline deadline)
    {
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            deadline.Check();
            char c = s[i];
            if (c is '$' or '%') continue;
            if (c == '~') { sb.Append(' '); continue; }
            if (c != '\\') { sb.Append(c); continue; }
            if (i + 1 >= s.Length) break;
            char n = s[i + 1];
            if (char.IsAsciiLetter(n))
            {
                int end = i + 1;
                while (end < s.Length && char.IsAsciiLetter(s[end])) end++;
                string name = s[(i + 1)..end];
                i = end - 1;
                if (DroppedCommands.Contains(name))
                {
                    if (end < s.Length && s[end] == '.') i++; // \left. and \right. are invisible
                }
                else if (SpaceCommands.Contains(name)) sb.Append(' ');
                else if (RenamedCommands.TryGetValue(name, out string? renamed)) sb.Append(renamed).Append(' ');
                else sb.Append('\\').Append(name);
                continue;
            }
            i++;
            switch (n)
            {
                case '!' or ',' or ';' or ':' or '>' or '%' or '$' or '(' or ')' or '[' or ']': break;
                case ' ': sb.Append(' '); break;
                case '-': sb.Append('-'); break;
                default: sb.Append('\\').Append(n); break; // \{ \} \\ \| ...
            }
        }
        return sb.ToString().Trim();
    }

    /// <summary>
    /// <c>{n \choose k}</c> → <c>\binom{n}{k}</c>: the group that holds <c>\choose</c> (innermost first) becomes a
    /// binomial of what stands before and after it; a whole answer <c>n \choose k</c> too.
    /// </summary>
    private static string ChooseToBinom(string s, Deadline deadline)
    {
        for (int guard = 0; guard < 16; guard++)
        {
            int at = IndexOfCommand(s, "choose");
            if (at < 0) return s;
            int[] match = Braces.Match(s, deadline);
            int open = at - 1;
            while (open >= 0 && !(s[open] == '{' && match[open] > at)) open--;
            int end = open >= 0 ? match[open] : s.Length;
            string top = s[(open + 1)..at].Trim(), bottom = s[(at + @"\choose".Length)..end].Trim();
            if (top.Length == 0 || bottom.Length == 0) return s;
            string binomial = $@"\binom{{{top}}}{{{bottom}}}";
            s = open >= 0 ? s[..open] + binomial + s[(end + 1)..] : binomial;
        }
        return s;
    }

    /// <summary>The index of <c>\name</c> as a whole command (not the start of a longer name), or -1.</summary>
    private static int IndexOfCommand(string s, string name)
    {
        string command = "\\" + name;
        for (int at = s.IndexOf(command, StringComparison.Ordinal); at >= 0; at = s.IndexOf(command, at + 1, StringComparison.Ordinal))
        {
            int after = at + command.Length;
            if (after >= s.Length || !char.IsAsciiLetter(s[after])) return at;
        }
        return -1;
    }

    /// <summary>Removes <c>5\text{ cm}</c>-style trailing units (also <c>\text{cm}^2</c>), while something else precedes them.</summary>
    private static string RemoveTrailingTextUnits(string s, Deadline deadline)
    {
        for (int round = 0; round < 4; round++)
        {
            string t = s.TrimEnd();
            foreach (string power in new[] { "^{2}", "^{3}", "^2", "^3" })
                if (t.EndsWith(power, StringComparison.Ordinal)) { t = t[..^power.Length].TrimEnd(); break; }
            if (t.Length == 0 || t[^1] != '}') return s;
            int[] match = Braces.Match(t, deadline);
            int open = Array.IndexOf(match, t.Length - 1);
            if (open < 1) return s;
            int nameEnd = open;
            while (nameEnd > 0 && t[nameEnd - 1] == ' ') nameEnd--;
            int nameStart = nameEnd;
            while (nameStart > 0 && char.IsAsciiLetter(t[nameStart - 1])) nameStart--;
            if (nameStart == 0 || t[nameStart - 1] != '\\') return s;
            string name = t[nameStart..nameEnd];
            if (!UnitCommands.Contains(name)) return s;
            string content = t[(open + 1)..^1].Trim();
            string prefix = t[..(nameStart - 1)].TrimEnd();
            if (prefix.Length == 0) return s;
            // "e" and "i" are constants, "and"/"or" separate answers; a group holding math (digits other than an
            // exponent as in "m^2", or "=") is not a unit either.
            if (content is "e" or "i" or "and" or "or") return s;
            bool digits = content.Any(char.IsAsciiDigit);
            if ((digits && !content.Contains('^')) || content.Contains('=')) return s;
            s = prefix;
        }
        return s;
    }

    /// <summary>Replaces every <c>\text{...}</c>-like group by its content ("and"/"or" by a comma).</summary>
    private static string UnwrapTextGroups(string s, Deadline deadline)
    {
        if (!s.Contains('\\')) return s;
        int[] match = Braces.Match(s, deadline);
        var dropClose = new bool[s.Length];
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            deadline.Check();
            if (dropClose[i]) continue;
            char c = s[i];
            if (c == '\\' && i + 1 < s.Length && char.IsAsciiLetter(s[i + 1]))
            {
                int end = i + 1;
                while (end < s.Length && char.IsAsciiLetter(s[end])) end++;
                int open = end;
                while (open < s.Length && s[open] == ' ') open++;
                if (TextCommands.Contains(s[(i + 1)..end]) && open < s.Length && s[open] == '{' && match[open] > open)
                {
                    string content = s[(open + 1)..match[open]].Trim();
                    if (content is "and" or "or" or "and/or" or "," or "or,")
                    {
                        sb.Append(" , ");
                        i = match[open];
                    }
                    else
                    {
                        dropClose[match[open]] = true;
                        i = open;
                    }
                    continue;
                }
                sb.Append(s, i, end - i);
                i = end - 1;
                continue;
            }
            if (c == '\\' && i + 1 < s.Length)
            {
                sb.Append(c).Append(s[i + 1]);
                i++;
                continue;
            }
            sb.Append(c);
        }
        return sb.ToString().Trim();
    }

    private static string RemoveDegrees(string s)
    {
        if (!s.Contains(@"\circ", StringComparison.Ordinal)) return s;
        s = s.Replace(@"^{\circ}", "", StringComparison.Ordinal)
            .Replace(@"^ {\circ}", "", StringComparison.Ordinal)
            .Replace(@"^\circ", "", StringComparison.Ordinal)
            .Replace(@"^ \circ", "", StringComparison.Ordinal)
            .Replace(@"{}", "", StringComparison.Ordinal)
            .TrimEnd();
        if (s.EndsWith(@"\circ", StringComparison.Ordinal)) s = s[..^5].TrimEnd();
        return s;
    }

    /// <summary>Removes trailing unit words after a number or group: <c>5 cm</c>, <c>12 square units</c>.</summary>
    private static string RemoveTrailingUnitWords(string s, Deadline deadline)
    {
        for (int round = 0; round < 4; round++)
        {
            deadline.Check();
            string t = s.TrimEnd().TrimEnd('.');
            foreach (string power in new[] { "^2", "^3" })
                if (t.EndsWith(power, StringComparison.Ordinal)) { t = t[..^power.Length]; break; }
            int start = t.Length;
            while (start > 0 && char.IsAsciiLetter(t[start - 1])) start--;
            if (start == t.Length || start == 0 || t[start - 1] != ' ') return s;
            if (!UnitWords.Contains(t[start..])) return s;
            string prefix = t[..start].TrimEnd();
            if (prefix.Length == 0) return s;
            char last = prefix[^1];
            if (!(char.IsAsciiDigit(last) || last is '}' or ')' || UnitWords.Contains(LastWord(prefix)))) return s;
            s = prefix;
        }
        return s;
    }

    private static string LastWord(string s)
    {
        int start = s.Length;
        while (start > 0 && char.IsAsciiLetter(s[start - 1])) start--;
        return start > 0 && s[start - 1] == '\\' ? "" : s[start..];
    }

    private static string WordsToCommas(string s)
    {
        if (!s.Contains(" and ", StringComparison.Ordinal) && !s.Contains(" or ", StringComparison.Ordinal)) return s;
        return s.Replace(" and ", " , ", StringComparison.Ordinal).Replace(" or ", " , ", StringComparison.Ordinal);
    }

    /// <summary>"2 1/2" → <c>\frac{5}{2}</c> (a whole answer that is an integer, spaces, and a proper fraction).</summary>
    private static string MixedNumberWithSpace(string s)
    {
        int i = 0;
        bool negative = s.StartsWith('-');
        if (negative) i++;
        int wholeStart = i;
        while (i < s.Length && char.IsAsciiDigit(s[i])) i++;
        if (i == wholeStart || i >= s.Length || s[i] != ' ') return s;
        string whole = s[wholeStart..i];
        while (i < s.Length && s[i] == ' ') i++;
        string rest = s[i..];
        int slash = rest.IndexOf('/');
        if (slash <= 0) return s;
        string num = rest[..slash], den = rest[(slash + 1)..];
        return MixedToFrac(negative, whole, num, den) ?? s;
    }

    /// <summary><c>2\frac{1}{2}</c> → <c>\frac{5}{2}</c> (run after the shorthand fix, so <c>2\frac12</c> works too).</summary>
    private static string MixedNumberWithFrac(string s)
    {
        int frac = s.IndexOf(@"\frac{", StringComparison.Ordinal);
        if (frac <= 0) return s;
        bool negative = s[0] == '-';
        string whole = s[(negative ? 1 : 0)..frac];
        string rest = s[(frac + 6)..];
        int mid = rest.IndexOf("}{", StringComparison.Ordinal);
        if (mid <= 0 || !rest.EndsWith('}')) return s;
        return MixedToFrac(negative, whole, rest[..mid], rest[(mid + 2)..^1]) ?? s;
    }

    private static string? MixedToFrac(bool negative, string whole, string num, string den)
    {
        static bool Digits(string t) => t.Length is > 0 and <= 60 && t.All(char.IsAsciiDigit);
        if (!Digits(whole) || !Digits(num) || !Digits(den)) return null;
        var w = System.Numerics.BigInteger.Parse(whole, System.Globalization.CultureInfo.InvariantCulture);
        var n = System.Numerics.BigInteger.Parse(num, System.Globalization.CultureInfo.InvariantCulture);
        var d = System.Numerics.BigInteger.Parse(den, System.Globalization.CultureInfo.InvariantCulture);
        if (d.IsZero || n >= d) return null;
        return $"{(negative ? "-" : "")}\\frac{{{w * d + n}}}{{{d}}}";
    }

    /// <summary>Removes whitespace, keeping one space between a command name and a following letter.</summary>
    private static string RemoveWhitespace(string s, Deadline deadline)
    {
        var sb = new StringBuilder(s.Length);
        bool inCommandName = false;
        for (int i = 0; i < s.Length; i++)
        {
            deadline.Check();
            char c = s[i];
            if (c == ' ')
            {
                int next = i;
                while (next < s.Length && s[next] == ' ') next++;
                if (inCommandName && next < s.Length && char.IsAsciiLetter(s[next])) sb.Append(' ');
                inCommandName = false;
                i = next - 1;
                continue;
            }
            if (c == '\\')
            {
                sb.Append(c);
                if (i + 1 < s.Length && !char.IsAsciiLetter(s[i + 1])) { sb.Append(s[i + 1]); i++; inCommandName = false; }
                else inCommandName = true;
                continue;
            }
            if (!char.IsAsciiLetter(c)) inCommandName = false;
            sb.Append(c);
        }
        return sb.ToString();
    }

    private static string CleanPunctuation(string s)
    {
        s = s.Replace("{,}", "", StringComparison.Ordinal);
        while (s.Contains(",,", StringComparison.Ordinal)) s = s.Replace(",,", ",", StringComparison.Ordinal);
        s = s.TrimStart(':', ',').TrimEnd('.', ',', ';', ':');
        while (s.EndsWith(@"\\", StringComparison.Ordinal)) s = s[..^2].TrimEnd('.', ',', ';');
        s = s.Replace(@"\{\}", @"\emptyset", StringComparison.Ordinal);
        return s;
    }

    /// <summary><c>\frac12</c> → <c>\frac{1}{2}</c>, <c>\frac1{x}</c>, <c>\binom52</c>, <c>\sqrt2</c> → <c>\sqrt{2}</c>, <c>\sqrt x</c>.</summary>
    private static string FixShorthandArguments(string s, Deadline deadline)
    {
        if (!s.Contains(@"\frac", StringComparison.Ordinal) && !s.Contains(@"\sqrt", StringComparison.Ordinal)
            && !s.Contains(@"\binom", StringComparison.Ordinal)) return s;
        var sb = new StringBuilder(s.Length + 8);
        for (int i = 0; i < s.Length; i++)
        {
            deadline.Check();
            int arguments = 0, skip = 0;
            if (string.CompareOrdinal(s, i, @"\frac", 0, 5) == 0 && (i + 5 >= s.Length || !char.IsAsciiLetter(s[i + 5])))
                (arguments, skip) = (2, 5);
            else if (string.CompareOrdinal(s, i, @"\binom", 0, 6) == 0 && (i + 6 >= s.Length || !char.IsAsciiLetter(s[i + 6])))
                (arguments, skip) = (2, 6);
            else if (string.CompareOrdinal(s, i, @"\sqrt", 0, 5) == 0 && (i + 5 >= s.Length || !char.IsAsciiLetter(s[i + 5])))
                (arguments, skip) = (1, 5);
            if (arguments == 0)
            {
                sb.Append(s[i]);
                if (s[i] == '\\' && i + 1 < s.Length && !char.IsAsciiLetter(s[i + 1])) sb.Append(s[++i]);
                continue;
            }
            sb.Append(s, i, skip);
            int j = i + skip;
            if (arguments == 1 && j < s.Length && s[j] == '[')
            {
                int close = s.IndexOf(']', j);
                if (close < 0) { i = j - 1; continue; }
                sb.Append(s, j, close - j + 1);
                j = close + 1;
            }
            // Only single-character arguments are rewritten; braced ones are copied as they come.
            for (int a = 0; a < arguments && j < s.Length; a++)
            {
                if (s[j] == ' ' && j + 1 < s.Length && char.IsAsciiLetterOrDigit(s[j + 1])) j++;
                if (s[j] == '{') break;
                if (!char.IsAsciiLetterOrDigit(s[j])) break;
                sb.Append('{').Append(s[j]).Append('}');
                j++;
                if (a == 0 && arguments == 2 && j < s.Length && s[j] == '{')
                {
                    int close = Braces.FindClosing(s, j, deadline);
                    if (close < 0) break;
                    sb.Append(s, j, close - j + 1);
                    j = close + 1;
                    break;
                }
            }
            i = j - 1;
        }
        string result = sb.ToString();
        // \frac{1}2: a braced numerator followed by a bare one-character denominator.
        return FixBareDenominators(result, deadline);
    }

    private static string FixBareDenominators(string s, Deadline deadline)
    {
        int at = s.IndexOf(@"\frac{", StringComparison.Ordinal);
        if (at < 0) return s;
        var sb = new StringBuilder(s.Length + 4);
        int copied = 0;
        while (at >= 0)
        {
            deadline.Check();
            int close = Braces.FindClosing(s, at + 5, deadline);
            if (close < 0) break;
            int d = close + 1;
            if (d < s.Length && char.IsAsciiLetterOrDigit(s[d]))
            {
                sb.Append(s, copied, d - copied).Append('{').Append(s[d]).Append('}');
                copied = d + 1;
            }
            at = s.IndexOf(@"\frac{", at + 6, StringComparison.Ordinal);
        }
        sb.Append(s, copied, s.Length - copied);
        return sb.ToString();
    }

    /// <summary><c>^{2}</c> → <c>^2</c>, <c>_{1}</c> → <c>_1</c> (one-character scripts).</summary>
    private static string SimplifyScripts(string s, Deadline deadline)
    {
        if (!s.Contains("^{", StringComparison.Ordinal) && !s.Contains("_{", StringComparison.Ordinal)) return s;
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            deadline.Check();
            char c = s[i];
            if (c is '^' or '_' && i + 3 < s.Length && s[i + 1] == '{' && char.IsAsciiLetterOrDigit(s[i + 2]) && s[i + 3] == '}')
            {
                sb.Append(c).Append(s[i + 2]);
                i += 3;
                continue;
            }
            sb.Append(c);
        }
        return sb.ToString();
    }

    /// <summary>Outer braces, <c>(B)</c>, <c>x\in S</c>, a whole-answer box.</summary>
    private static string StripWrappers(string s, Deadline deadline)
    {
        for (int guard = 0; guard < 16; guard++)
        {
            string before = s;
            s = UnwrapWholeBoxed(s, deadline);
            s = StripOuterBraces(s, deadline);
            if (s.Length == 3 && s[0] == '(' && s[2] == ')' && char.IsAsciiLetter(s[1])) s = s[1..2];
            int inAt = s.IndexOf(@"\in", StringComparison.Ordinal);
            if (inAt > 0 && inAt + 3 < s.Length && !char.IsAsciiLetter(s[inAt + 3]) && IsSimpleVariable(s[..inAt]))
                s = s[(inAt + 3)..];
            if (s == before) break;
        }
        return s;
    }

    /// <summary><c>{{5}}</c> → <c>5</c>, in one linear pass however deep the braces go.</summary>
    private static string StripOuterBraces(string s, Deadline deadline)
    {
        if (s.Length < 2 || s[0] != '{' || s[^1] != '}') return s;
        int[] match = Braces.Match(s, deadline);
        int k = 0;
        while (k < s.Length / 2 && s[k] == '{' && match[k] == s.Length - 1 - k) k++;
        return k == 0 ? s : s[k..^k].Trim();
    }

    /// <summary>x, y, a_1, x_{12}, \theta: a name that can stand on the left of "= 5" or "\in S".</summary>
    internal static bool IsSimpleVariable(string s)
    {
        if (s.Length == 0) return false;
        int i = 0;
        if (s[0] == '\\')
        {
            i = 1;
            while (i < s.Length && char.IsAsciiLetter(s[i])) i++;
            if (i == 1) return false;
        }
        else if (char.IsAsciiLetter(s[0])) i = 1;
        else return false;
        if (i == s.Length) return true;
        if (s[i] != '_') return false;
        string sub = s[(i + 1)..].Trim('{', '}');
        return sub.Length is > 0 and <= 4 && sub.All(char.IsAsciiLetterOrDigit);
    }

    /// <summary>"1,000,000" → "1000000" when the whole answer is one number with thousands separators.</summary>
    private static string RemoveThousandsSeparators(string s)
    {
        if (!s.Contains(',')) return s;
        string body = s.StartsWith('-') ? s[1..] : s;
        return AnswerExtractor.IsThousandsGrouped(body) ? s.Replace(",", "", StringComparison.Ordinal) : s;
    }

    private static string NormalizeSpecialValues(string s)
    {
        if (s.Contains("infinity", StringComparison.OrdinalIgnoreCase))
            s = s.Replace("infinity", @"\infty", StringComparison.OrdinalIgnoreCase);
        if (s is "inf" or @"\inf" or "+inf") s = @"\infty";
        if (s.Contains(@"+\infty", StringComparison.Ordinal))
        {
            s = s.StartsWith(@"+\infty", StringComparison.Ordinal) ? s[1..] : s;
            s = s.Replace(@"(+\infty", @"(\infty", StringComparison.Ordinal)
                .Replace(@"[+\infty", @"[\infty", StringComparison.Ordinal)
                .Replace(@",+\infty", @",\infty", StringComparison.Ordinal);
        }
        s = s.Replace(@"\mathbb R", @"\mathbb{R}", StringComparison.Ordinal);
        if (s == @"(-\infty,\infty)") s = @"\mathbb{R}";
        if (s is "{}" or @"\{\}" or "\\emptyset" or "\\O") s = @"\emptyset";
        return s;
    }

    private static string NormalizeMatrices(string s, Deadline deadline)
    {
        if (!s.Contains(@"\begin{", StringComparison.Ordinal)) return s;
        foreach (string env in new[] { "bmatrix", "Bmatrix", "smallmatrix", "vmatrix", "Vmatrix", "matrix" })
            s = s.Replace(@"\begin{" + env + "}", @"\begin{pmatrix}", StringComparison.Ordinal)
                .Replace(@"\end{" + env + "}", @"\end{pmatrix}", StringComparison.Ordinal);
        int array = s.IndexOf(@"\begin{array}", StringComparison.Ordinal);
        while (array >= 0)
        {
            deadline.Check();
            int spec = array + @"\begin{array}".Length;
            int specEnd = spec < s.Length && s[spec] == '{' ? Braces.FindClosing(s, spec, deadline) : spec - 1;
            s = s[..array] + @"\begin{pmatrix}" + s[(specEnd + 1)..];
            array = s.IndexOf(@"\begin{array}", array + 1, StringComparison.Ordinal);
        }
        s = s.Replace(@"\end{array}", @"\end{pmatrix}", StringComparison.Ordinal);
        if (s.StartsWith(@"(\begin{pmatrix}", StringComparison.Ordinal) && s.EndsWith(@"\end{pmatrix})", StringComparison.Ordinal))
            s = s[1..^1];
        if (s.StartsWith(@"[\begin{pmatrix}", StringComparison.Ordinal) && s.EndsWith(@"\end{pmatrix}]", StringComparison.Ordinal))
            s = s[1..^1];
        return s;
    }
}

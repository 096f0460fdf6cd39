namespace OR1.Grpo.Rewards.Math;

/// <summary>
/// Reads a one-variable inequality as an interval, so <c>x &gt; 2</c> matches <c>(2,\infty)</c> and
/// <c>-1 \le x &lt; 3</c> matches <c>[-1,3)</c>. Works on normalised text (relations <c>&lt; &gt; \le \ge</c>).
/// </summary>
internal static class Inequality
{
    /// <summary>The interval the inequality describes, as normalised text, or null when it is not one.</summary>
    public static string? AsInterval(string s, Deadline deadline)
    {
        var parts = new List<string>();
        var relations = new List<string>();
        int depth = 0, start = 0;
        for (int i = 0; i < s.Length; i++)
        {
            deadline.Check();
            string? relation = null;
            if (depth == 0)
            {
                if (s[i] is '<' or '>') relation = s[i].ToString();
                else if (IsCommand(s, i, @"\le")) relation = @"\le";
                else if (IsCommand(s, i, @"\ge")) relation = @"\ge";
            }
            if (relation is not null)
            {
                if (relations.Count == 2) return null;
                parts.Add(s[start..i].Trim());
                relations.Add(relation);
                i += relation.Length - 1;
                start = i + 1;
                continue;
            }
            depth = System.Math.Max(0, depth + Braces.BracketDelta(s, i, out int width));
            i += width - 1;
        }
        parts.Add(s[start..].Trim());
        if (relations.Count == 0 || parts.Any(p => p.Length == 0)) return null;

        static bool Less(string relation) => relation is "<" or @"\le";
        static bool Strict(string relation) => relation is "<" or ">";
        static string Open(bool strict) => strict ? "(" : "[";
        static string Close(bool strict) => strict ? ")" : "]";

        if (relations.Count == 1)
        {
            string relation = relations[0];
            if (LatexNormalizer.IsSimpleVariable(parts[0]))
                return Less(relation) ? $@"(-\infty,{parts[1]}{Close(Strict(relation))}" : $@"{Open(Strict(relation))}{parts[1]},\infty)";
            if (LatexNormalizer.IsSimpleVariable(parts[1]))
                return Less(relation) ? $@"{Open(Strict(relation))}{parts[0]},\infty)" : $@"(-\infty,{parts[0]}{Close(Strict(relation))}";
            return null;
        }

        if (!LatexNormalizer.IsSimpleVariable(parts[1]) || Less(relations[0]) != Less(relations[1])) return null;
        return Less(relations[0])
            ? $"{Open(Strict(relations[0]))}{parts[0]},{parts[2]}{Close(Strict(relations[1]))}"
            : $"{Open(Strict(relations[1]))}{parts[2]},{parts[0]}{Close(Strict(relations[0]))}";
    }

    private static bool IsCommand(string s, int i, string command) =>
        string.CompareOrdinal(s, i, command, 0, command.Length) == 0
        && (i + command.Length >= s.Length || !char.IsAsciiLetter(s[i + command.Length]));
}

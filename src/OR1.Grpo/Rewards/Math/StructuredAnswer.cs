namespace OR1.Grpo.Rewards.Math;

/// <summary>The outer shape of a normalised answer, which decides how two answers are compared.</summary>
internal enum AnswerShape
{
    /// <summary>One value or expression (also an equation).</summary>
    Scalar,

    /// <summary>A bracketed sequence: tuple / point <c>(1,2)</c> or interval <c>[1,3)</c>; order and brackets matter.</summary>
    Sequence,

    /// <summary><c>\{1,2\}</c>: order does not matter.</summary>
    Set,

    /// <summary>Bare comma-separated answers (<c>1,2</c>, <c>x=1,x=2</c>, <c>1\pm\sqrt{2}</c>): order does not matter.</summary>
    List,

    /// <summary>Sets joined by <c>\cup</c>: order does not matter.</summary>
    Union,

    /// <summary>A <c>pmatrix</c>: <see cref="StructuredAnswer.Elements"/> row by row.</summary>
    Matrix,
}

/// <summary>An answer split into its shape and elements (elements are normalised strings).</summary>
internal sealed record StructuredAnswer(AnswerShape Shape, IReadOnlyList<string> Elements, char Open = '\0', char Close = '\0', int Columns = 0)
{
    private const string MatrixBegin = @"\begin{pmatrix}";
    private const string MatrixEnd = @"\end{pmatrix}";

    public static StructuredAnswer Parse(string s, Deadline deadline)
    {
        if (s.StartsWith(MatrixBegin, StringComparison.Ordinal) && s.EndsWith(MatrixEnd, StringComparison.Ordinal)
            && s.Length >= MatrixBegin.Length + MatrixEnd.Length)
        {
            string inner = s[MatrixBegin.Length..^MatrixEnd.Length];
            var rows = SplitTopLevel(inner, @"\\", deadline).Where(r => r.Length > 0).ToList();
            var cells = rows.Select(r => SplitTopLevel(r, "&", deadline)).ToList();
            int columns = cells.Count == 0 ? 0 : cells[0].Count;
            if (cells.All(r => r.Count == columns)) return new(AnswerShape.Matrix, cells.SelectMany(r => r).ToList(), Columns: columns);
        }

        var union = SplitTopLevel(s, @"\cup", deadline);
        if (union.Count > 1) return new(AnswerShape.Union, union);

        if (s.Length >= 4 && s.StartsWith(@"\{", StringComparison.Ordinal) && Braces.FindClosingAny(s, 0, deadline) == s.Length - 1
            && s.EndsWith(@"\}", StringComparison.Ordinal))
            return new(AnswerShape.Set, SplitTopLevel(s[2..^2], ",", deadline));

        if (s.Length >= 2 && s[0] is '(' or '[' && s[^1] is ')' or ']' && Braces.FindClosingAny(s, 0, deadline) == s.Length - 1)
        {
            var inner = SplitTopLevel(s[1..^1], ",", deadline);
            if (inner.Count >= 2) return new(AnswerShape.Sequence, inner, s[0], s[^1]);
        }

        var list = SplitTopLevel(s, ",", deadline);
        if (list.Count >= 2) return new(AnswerShape.List, list);

        foreach (string pm in new[] { @"\pm", @"\mp" })
        {
            int at = s.IndexOf(pm, StringComparison.Ordinal);
            if (at >= 0 && s.IndexOf(pm, at + 1, StringComparison.Ordinal) < 0 && (at + 3 >= s.Length || !char.IsAsciiLetter(s[at + 3])))
                return new(AnswerShape.List, [s[..at] + "+" + s[(at + 3)..], s[..at] + "-" + s[(at + 3)..]]);
        }

        return new(AnswerShape.Scalar, [s]);
    }

    /// <summary>Splits at <paramref name="separator"/> where no bracket of any kind is open.</summary>
    public static List<string> SplitTopLevel(string s, string separator, Deadline deadline)
    {
        var parts = new List<string>();
        int depth = 0, start = 0;
        for (int i = 0; i < s.Length; i++)
        {
            deadline.Check();
            if (depth == 0 && string.CompareOrdinal(s, i, separator, 0, separator.Length) == 0
                && !(separator[0] == '\\' && i + separator.Length < s.Length && char.IsAsciiLetter(separator[^1]) && char.IsAsciiLetter(s[i + separator.Length])))
            {
                parts.Add(s[start..i]);
                i += separator.Length - 1;
                start = i + 1;
                continue;
            }
            depth += Braces.BracketDelta(s, i, out int width);
            if (depth < 0) depth = 0;
            i += width - 1;
        }
        parts.Add(s[start..]);
        return parts;
    }
}

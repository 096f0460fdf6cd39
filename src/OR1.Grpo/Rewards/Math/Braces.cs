namespace OR1.Grpo.Rewards.Math;

/// <summary>
/// Brace matching over LaTeX text: <c>{</c> and <c>}</c> nest; a backslash escapes the next character, so
/// <c>\{</c>, <c>\}</c> and <c>\\</c> never count. Iterative (an explicit stack), so any nesting depth is safe.
/// </summary>
internal static class Braces
{
    /// <summary>For each '{', the index of its matching '}' (-1 when unbalanced); other entries are -1.</summary>
    public static int[] Match(string s, Deadline deadline)
    {
        var match = new int[s.Length];
        Array.Fill(match, -1);
        var open = new Stack<int>();
        for (int i = 0; i < s.Length; i++)
        {
            deadline.Check();
            char c = s[i];
            if (c == '\\') { i++; continue; }
            if (c == '{') open.Push(i);
            else if (c == '}' && open.Count > 0) match[open.Pop()] = i;
        }
        return match;
    }

    /// <summary>The index of the '}' closing the '{' at <paramref name="open"/>, or -1 when it is never closed.</summary>
    public static int FindClosing(string s, int open, Deadline deadline)
    {
        int depth = 0;
        for (int i = open; i < s.Length; i++)
        {
            deadline.Check();
            char c = s[i];
            if (c == '\\') { i++; continue; }
            if (c == '{') depth++;
            else if (c == '}' && --depth == 0) return i;
        }
        return -1;
    }

    /// <summary>
    /// The index of the bracket closing the one at <paramref name="open"/>, counting (, [, {, \{ as openers and
    /// ), ], }, \} as closers of any kind (so half-open intervals like <c>[1,3)</c> pair up); -1 if never closed.
    /// </summary>
    public static int FindClosingAny(string s, int open, Deadline deadline)
    {
        int depth = 0;
        for (int i = open; i < s.Length; i++)
        {
            deadline.Check();
            int delta = BracketDelta(s, i, out int width);
            depth += delta;
            if (delta < 0 && depth == 0) return i + width - 1;
            if (depth < 0) return -1;
            i += width - 1;
        }
        return -1;
    }

    /// <summary>+1 for an opener at <paramref name="i"/>, -1 for a closer, 0 otherwise; <paramref name="width"/> is its length.</summary>
    public static int BracketDelta(string s, int i, out int width)
    {
        width = 1;
        char c = s[i];
        if (c == '\\' && i + 1 < s.Length)
        {
            width = 2;
            char n = s[i + 1];
            return n == '{' ? 1 : n == '}' ? -1 : 0;
        }
        return c is '(' or '[' or '{' ? 1 : c is ')' or ']' or '}' ? -1 : 0;
    }
}

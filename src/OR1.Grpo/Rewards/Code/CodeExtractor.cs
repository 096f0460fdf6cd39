namespace OR1.Grpo.Rewards.Code;

/// <summary>
/// Finds the program in a response (docs/RECIPE.md "Rewards"): the last fenced block whose info string is
/// <c>python</c> (also <c>python3</c> or <c>py</c>, any case), in the text after &lt;/think&gt; that the
/// <see cref="RewardRouter"/> passes on. Fences pair up in order, so a block in another language is skipped
/// whole; a block that is opened but never closed does not count. One linear scan, no regular expression.
/// </summary>
public static class CodeExtractor
{
    private const string Fence = "```";

    /// <summary>The body of the last fenced python block, or null when there is none.</summary>
    public static string? ExtractPython(string? text)
    {
        if (string.IsNullOrEmpty(text)) return null;
        string? last = null;
        int position = 0;
        while (position < text.Length)
        {
            int open = text.IndexOf(Fence, position, StringComparison.Ordinal);
            if (open < 0) break;
            int endOfInfo = text.IndexOf('\n', open + Fence.Length);
            if (endOfInfo < 0) break;
            int close = text.IndexOf(Fence, endOfInfo + 1, StringComparison.Ordinal);
            if (close < 0) break;
            if (IsPython(text.AsSpan(open + Fence.Length, endOfInfo - open - Fence.Length))) last = text[(endOfInfo + 1)..close];
            position = close + Fence.Length;
        }
        return last;
    }

    private static bool IsPython(ReadOnlySpan<char> info)
    {
        info = info.Trim();
        int space = info.IndexOfAny(' ', '\t');
        if (space >= 0) info = info[..space];
        return info.Equals("python", StringComparison.OrdinalIgnoreCase)
            || info.Equals("python3", StringComparison.OrdinalIgnoreCase)
            || info.Equals("py", StringComparison.OrdinalIgnoreCase);
    }
}

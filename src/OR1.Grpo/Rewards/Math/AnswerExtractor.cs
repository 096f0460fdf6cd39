namespace OR1.Grpo.Rewards.Math;

/// <summary>
/// Finds the final answer in the text a model wrote after &lt;/think&gt;. Rules, first match wins:
/// <list type="number">
/// <item>the last <c>\boxed{...}</c> / <c>\fbox{...}</c> whose braces balance (escaped <c>\{ \}</c> do not count;
/// an unclosed or empty box is skipped for the one before it), or <c>\boxed x</c> (one token up to a space or <c>$</c>);</item>
/// <item>the text after the last "final answer is" / "final answer:" (case-insensitive);</item>
/// <item>the text after the last "answer:" / "answer is";</item>
/// <item>the last number (<c>-12</c>, <c>3.5</c>, <c>1,000,000</c>).</item>
/// </list>
/// A phrase answer runs to the end of its line or sentence; one written as <c>$...$</c>, <c>\(...\)</c> or
/// <c>\[...\]</c> runs to the closing delimiter. Only the last <see cref="MathRewardOptions.MaxAnswerChars"/>
/// characters are searched, and the scan is linear, so hostile text costs little and never throws.
/// </summary>
public static class AnswerExtractor
{
    private static readonly string[] BoxCommands = [@"\boxed", @"\fbox"];
    private static readonly string[] FinalPhrases = ["final answer is", "final answer:"];
    private static readonly string[] AnswerPhrases = ["answer:", "answer is"];

    private static readonly HashSet<string> ProseWords = new(StringComparer.OrdinalIgnoreCase)
    {
        "which", "since", "because", "as", "where", "that", "but", "so", "for", "when", "if", "hence", "thus",
        "therefore", "then", "is", "are", "was", "were", "meaning", "i", "we",
    };

    /// <summary>The answer in <paramref name="text"/>, or null when there is none (default limits, no time limit).</summary>
    public static ExtractedAnswer? Extract(string text) =>
        Extract(text, MathRewardOptions.Default.MaxAnswerChars, Deadline.None);

    internal static ExtractedAnswer? Extract(string text, int maxChars, Deadline deadline)
    {
        if (string.IsNullOrEmpty(text)) return null;
        if (maxChars > 0 && text.Length > maxChars) text = text[^maxChars..];

        string? boxed = LastBoxed(text, deadline);
        if (boxed is not null) return new ExtractedAnswer(boxed, AnswerSource.Boxed);
        string? final = AfterLastPhrase(text, FinalPhrases, deadline);
        if (final is not null) return new ExtractedAnswer(final, AnswerSource.FinalAnswerPhrase);
        string? answer = AfterLastPhrase(text, AnswerPhrases, deadline);
        if (answer is not null) return new ExtractedAnswer(answer, AnswerSource.AnswerPhrase);
        string? number = LastNumber(text, deadline);
        return number is null ? null : new ExtractedAnswer(number, AnswerSource.LastNumber);
    }

    /// <summary>The content of the last well-formed box in <paramref name="text"/>, or null.</summary>
    internal static string? LastBoxed(string text, Deadline deadline)
    {
        int[]? match = null;
        int searchEnd = text.Length;
        while (searchEnd > 0)
        {
            deadline.Check();
            int best = -1, bestLength = 0;
            foreach (string command in BoxCommands)
            {
                int at = text.LastIndexOf(command, searchEnd - 1, searchEnd, StringComparison.Ordinal);
                if (at > best) { best = at; bestLength = command.Length; }
            }
            if (best < 0) return null;
            searchEnd = best;

            int j = best + bestLength;
            if (j < text.Length && char.IsAsciiLetter(text[j])) continue; // \boxedfoo is another command
            int afterCommand = j;
            while (j < text.Length && char.IsWhiteSpace(text[j])) j++;
            if (j < text.Length && text[j] == '{')
            {
                match ??= Braces.Match(text, deadline);
                int close = match[j];
                if (close < 0) continue;
                string content = text[(j + 1)..close];
                if (content.Trim().Length > 0) return content;
            }
            else if (j > afterCommand)
            {
                int end = j;
                while (end < text.Length && !char.IsWhiteSpace(text[end]) && text[end] != '$') end++;
                if (end > j) return text[j..end];
            }
        }
        return null;
    }

    private static string? AfterLastPhrase(string text, string[] phrases, Deadline deadline)
    {
        // The latest occurrence of any phrase wins; if it yields nothing, try earlier ones.
        int searchEnd = text.Length;
        while (searchEnd > 0)
        {
            deadline.Check();
            int best = -1, bestLength = 0;
            foreach (string phrase in phrases)
            {
                int at = text.LastIndexOf(phrase, searchEnd - 1, searchEnd, StringComparison.OrdinalIgnoreCase);
                if (at > best) { best = at; bestLength = phrase.Length; }
            }
            if (best < 0) return null;
            searchEnd = best;
            string? answer = ReadPhraseAnswer(text, best + bestLength, deadline);
            if (answer is not null) return answer;
        }
        return null;
    }

    private static string? ReadPhraseAnswer(string text, int i, Deadline deadline)
    {
        while (i < text.Length && (text[i] is ':' or '*' or '=' || char.IsWhiteSpace(text[i]))) i++;
        if (i >= text.Length) return null;

        string? delimited = null;
        foreach (var (open, close) in new[] { ("$$", "$$"), ("$", "$"), (@"\(", @"\)"), (@"\[", @"\]") })
        {
            if (string.CompareOrdinal(text, i, open, 0, open.Length) != 0) continue;
            int end = text.IndexOf(close, i + open.Length, StringComparison.Ordinal);
            if (end >= 0) delimited = text[(i + open.Length)..end];
            break;
        }

        string answer;
        if (delimited is not null) answer = delimited;
        else
        {
            int end = i;
            while (end < text.Length && text[end] != '\n')
            {
                deadline.Check();
                // A sentence ends at ". ", "! ", "? " (a decimal point is followed by a digit, not a space).
                if (text[end] is '.' or '!' or '?' && (end + 1 >= text.Length || char.IsWhiteSpace(text[end + 1]))) break;
                end++;
            }
            answer = CutTrailingProse(text[i..end]);
        }
        answer = answer.Trim().TrimEnd('.', '*', ' ').Trim();
        if (answer.Length >= 2 && answer[0] == '$' && answer[^1] == '$') answer = answer.Trim('$').Trim();
        return answer.Length == 0 ? null : answer;
    }

    /// <summary>
    /// "5, which is odd" → "5": an undelimited phrase answer ends before a comma or space followed by a
    /// connective word (which, since, because, so, ...).
    /// </summary>
    private static string CutTrailingProse(string answer)
    {
        for (int k = 1; k < answer.Length; k++)
        {
            if (answer[k] != ' ' || !char.IsAsciiLetter(answer[k - 1]) && !char.IsAsciiDigit(answer[k - 1]) && answer[k - 1] is not (',' or ')' or ']' or '}'))
                continue;
            int wordEnd = k + 1;
            while (wordEnd < answer.Length && char.IsAsciiLetter(answer[wordEnd])) wordEnd++;
            if (wordEnd == k + 1 || (wordEnd < answer.Length && answer[wordEnd] is not (' ' or ',' or '.'))) continue;
            if (ProseWords.Contains(answer[(k + 1)..wordEnd])) return answer[..k].TrimEnd(',', ' ');
        }
        return answer;
    }

    /// <summary>The last number: digits with an optional sign, decimal part and thousands separators.</summary>
    internal static string? LastNumber(string text, Deadline deadline)
    {
        int last = -1;
        for (int k = text.Length - 1; k >= 0; k--)
        {
            deadline.Check();
            if (char.IsAsciiDigit(text[k])) { last = k; break; }
        }
        if (last < 0) return null;

        int start = last;
        while (start > 0 && (char.IsAsciiDigit(text[start - 1]) || text[start - 1] is ',' or '.'))
        {
            deadline.Check();
            start--;
        }
        string run = text[start..(last + 1)];
        int trimmed = run.Length - run.TrimStart(',', '.').Length;
        // A leading '.' is a decimal point (".5"); a leading ',' is punctuation.
        if (trimmed > 0 && run[trimmed - 1] == '.' && (trimmed == 1 || run[trimmed - 2] == ',')) trimmed--;
        run = run[trimmed..];
        start += trimmed;

        string number;
        if (IsThousandsGrouped(run)) number = run;
        else
        {
            number = run[(run.LastIndexOf(',') + 1)..];
            int dots = number.Count(c => c == '.');
            if (dots > 1) number = number[(number.LastIndexOf('.', number.LastIndexOf('.') - 1) + 1)..];
            start = last + 1 - number.Length;
        }

        if (start > 0 && text[start - 1] is '-' or '\u2212'
            && (start < 2 || !(char.IsLetterOrDigit(text[start - 2]) || text[start - 2] is ')' or ']' or '}')))
            number = "-" + number;
        return number;
    }

    /// <summary>"1,000" or "12,345,678.5": 1-3 digits, then groups of exactly three after each comma.</summary>
    internal static bool IsThousandsGrouped(string s)
    {
        int comma = s.IndexOf(',');
        if (comma < 1 || comma > 3) return false;
        int dot = s.IndexOf('.');
        string integer = dot < 0 ? s : s[..dot];
        if (dot >= 0 && (dot == s.Length - 1 || !s[(dot + 1)..].All(char.IsAsciiDigit))) return false;
        string[] groups = integer.Split(',');
        if (!groups[0].All(char.IsAsciiDigit) || groups[0].Length is < 1 or > 3) return false;
        for (int g = 1; g < groups.Length; g++)
            if (groups[g].Length != 3 || !groups[g].All(char.IsAsciiDigit)) return false;
        return true;
    }
}

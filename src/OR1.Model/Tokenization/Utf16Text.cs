using System.Text;

namespace OR1.Model.Tokenization;

/// <summary>Repairs of UTF-16 text that is not valid Unicode, before it reaches code that would refuse it.</summary>
public static class Utf16Text
{
    /// <summary>
    /// <paramref name="text"/> with every unpaired surrogate replaced by U+FFFD, as a UTF-8 encoder does; the same
    /// instance when there is none (the usual case costs one vectorised scan).
    /// </summary>
    public static string ReplaceLoneSurrogates(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int first = IndexOfLoneSurrogate(text, 0);
        if (first < 0) return text;
        var repaired = new StringBuilder(text.Length);
        int start = 0;
        for (int at = first; at >= 0; at = IndexOfLoneSurrogate(text, start))
        {
            repaired.Append(text, start, at - start).Append('\uFFFD');
            start = at + 1;
        }
        return repaired.Append(text, start, text.Length - start).ToString();
    }

    /// <summary>The index of the first surrogate at or after <paramref name="start"/> that is not half of a valid pair, or -1.</summary>
    public static int IndexOfLoneSurrogate(string text, int start)
    {
        for (int i = start; i < text.Length; i++)
        {
            int offset = text.AsSpan(i).IndexOfAnyInRange('\uD800', '\uDFFF');
            if (offset < 0) return -1;
            i += offset;
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
                continue;
            }
            return i;
        }
        return -1;
    }
}

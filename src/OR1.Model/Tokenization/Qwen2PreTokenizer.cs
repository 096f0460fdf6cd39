using System.Text;
using Microsoft.ML.Tokenizers;

namespace OR1.Model.Tokenization;

/// <summary>
/// Qwen2's pre-tokenizer: splits text into the pieces that BPE merges never cross, exactly as the
/// HF "Split" pre-tokenizer does with <see cref="Pattern"/> (behaviour Isolated).
/// </summary>
/// <remarks>
/// Written by hand instead of handing <see cref="Pattern"/> to the library's <see cref="RegexPreTokenizer"/>:
/// .NET's Regex works on UTF-16 code units, so outside the Basic Multilingual Plane <c>\p{L}</c> and
/// <c>\p{N}</c> never match (a surrogate is category Cs) and a negated class such as <c>[^\r\n\p{L}\p{N}]</c>
/// matches only half of a surrogate pair. HF (Oniguruma) works on code points, so with the Regex an emoji or
/// a math-alphabet letter (U+1D400...) next to a letter would be split differently from the model's training
/// data. This scanner implements the same alternation on code points (<see cref="Rune"/>); for BMP-only text
/// it agrees with the Regex (checked by the tests). It never splits a surrogate pair.
/// </remarks>
public sealed class Qwen2PreTokenizer : PreTokenizer
{
    /// <summary>The pre-tokenizer regex from Qwen2's tokenizer.json (byte-level, no prefix space).</summary>
    public const string Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>The shared instance (the pre-tokenizer has no state).</summary>
    public static Qwen2PreTokenizer Instance { get; } = new();

    /// <inheritdoc />
    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Split(text.AsSpan());
    }

    /// <inheritdoc />
    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text);

    /// <summary>The pieces of <paramref name="text"/> as (offset, length) in UTF-16 code units, covering it without gaps.</summary>
    public static List<(int Offset, int Length)> Split(ReadOnlySpan<char> text)
    {
        var pieces = new List<(int Offset, int Length)>(text.Length / 4 + 1);
        int i = 0;
        while (i < text.Length)
        {
            int length = MatchAt(text, i);
            pieces.Add((i, length));
            i += length;
        }

        return pieces;
    }

    /// <summary>Length of the match of <see cref="Pattern"/> starting at <paramref name="i"/>; every position has one.</summary>
    private static int MatchAt(ReadOnlySpan<char> s, int i)
    {
        Rune r = RuneAt(s, i, out int l0);
        int afterFirst = i + l0;

        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if (r.Value == '\'' && afterFirst < s.Length)
        {
            int c2 = RuneAt(s, afterFirst, out int l2).Value;
            if (IsAny(c2, 's') || IsAny(c2, 't') || IsAny(c2, 'm') || IsAny(c2, 'd'))
            {
                return l0 + l2;
            }

            if (afterFirst + l2 < s.Length)
            {
                int c3 = RuneAt(s, afterFirst + l2, out int l3).Value;
                if ((IsAny(c2, 'r') && IsAny(c3, 'e')) || (IsAny(c2, 'v') && IsAny(c3, 'e')) || (IsAny(c2, 'l') && IsAny(c3, 'l')))
                {
                    return l0 + l2 + l3;
                }
            }
        }

        // [^\r\n\p{L}\p{N}]?\p{L}+
        if (Rune.IsLetter(r))
        {
            return LetterRunEnd(s, i) - i;
        }

        if (!IsCrLf(r) && !Rune.IsNumber(r) && afterFirst < s.Length && Rune.IsLetter(RuneAt(s, afterFirst, out _)))
        {
            return LetterRunEnd(s, afterFirst) - i;
        }

        // \p{N}
        if (Rune.IsNumber(r))
        {
            return l0;
        }

        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        if (r.Value == ' ' && afterFirst < s.Length && IsOther(RuneAt(s, afterFirst, out _)))
        {
            return CrLfRunEnd(s, OtherRunEnd(s, afterFirst)) - i;
        }

        if (IsOther(r))
        {
            return CrLfRunEnd(s, OtherRunEnd(s, i)) - i;
        }

        // r is white space. W = the maximal white-space run starting here.
        int end = i, lastRuneStart = i, lastCrLfEnd = -1, runes = 0;
        while (end < s.Length)
        {
            Rune w = RuneAt(s, end, out int lw);
            if (!Rune.IsWhiteSpace(w))
            {
                break;
            }

            lastRuneStart = end;
            end += lw;
            runes++;
            if (IsCrLf(w))
            {
                lastCrLfEnd = end;
            }
        }

        // \s*[\r\n]+ : backtracking \s* stops right after the last CR/LF of W.
        if (lastCrLfEnd > 0)
        {
            return lastCrLfEnd - i;
        }

        // \s+(?!\S) : all of W at the end of the text, otherwise W less its last character (if that leaves any).
        if (end == s.Length)
        {
            return end - i;
        }

        if (runes >= 2)
        {
            return lastRuneStart - i;
        }

        // \s+
        return end - i;
    }

    /// <summary>The code point at <paramref name="i"/>; a lone surrogate reads as U+FFFD (a symbol) of length 1.</summary>
    private static Rune RuneAt(ReadOnlySpan<char> s, int i, out int length)
    {
        Rune.DecodeFromUtf16(s[i..], out Rune r, out length);
        return r;
    }

    private static bool IsAny(int c, char lower) =>
        c == lower || c == char.ToUpperInvariant(lower) || (lower == 's' && c == '\u017F'); // ſ case-folds to s

    private static bool IsCrLf(Rune r) => r.Value == '\r' || r.Value == '\n';

    private static bool IsOther(Rune r) => !Rune.IsWhiteSpace(r) && !Rune.IsLetter(r) && !Rune.IsNumber(r);

    private static int LetterRunEnd(ReadOnlySpan<char> s, int i)
    {
        while (i < s.Length)
        {
            Rune r = RuneAt(s, i, out int l);
            if (!Rune.IsLetter(r))
            {
                break;
            }

            i += l;
        }

        return i;
    }

    private static int OtherRunEnd(ReadOnlySpan<char> s, int i)
    {
        while (i < s.Length)
        {
            Rune r = RuneAt(s, i, out int l);
            if (!IsOther(r))
            {
                break;
            }

            i += l;
        }

        return i;
    }

    private static int CrLfRunEnd(ReadOnlySpan<char> s, int i)
    {
        while (i < s.Length && (s[i] == '\r' || s[i] == '\n'))
        {
            i++;
        }

        return i;
    }
}

using System.Text;
using Microsoft.ML.Tokenizers;

namespace OR1.Model.Tokenization;

/// <summary>
/// tokenizer.json's NFC normalizer (Qwen2's files declare it), plugged into the library's
/// <see cref="BpeTokenizer"/>, which applies it to ordinary text before pre-tokenization; added tokens are
/// matched on the raw text, as in HF. NFC itself is the runtime's (ICU); the project therefore does not
/// run in invariant-globalization mode, where string.Normalize silently does nothing.
/// </summary>
/// <remarks>
/// Text that is not valid Unicode never throws, and comes out as Hugging Face's tokenizers treats it: a lone
/// surrogate becomes U+FFFD (what the UTF-8 conversion in front of the Rust tokenizer does), and noncharacters
/// (U+FDD0..U+FDEF, U+FFFE, U+FFFF) are ordinary code points that NFC leaves alone. The runtime refuses some of
/// them ("String contains invalid Unicode code points"), so the text is normalized in pieces between them:
/// a noncharacter is a starter that composes with nothing, so the pieces normalize exactly as the whole would.
/// </remarks>
public sealed class NfcNormalizer : Normalizer
{
    /// <summary>The shared instance (no state).</summary>
    public static NfcNormalizer Instance { get; } = new();

    /// <summary><paramref name="text"/> in NFC, lone surrogates replaced by U+FFFD; the same instance when it already is.</summary>
    public static string ToNfc(string text)
    {
        text = Utf16Text.ReplaceLoneSurrogates(text);
        int noncharacter = IndexOfBmpNoncharacter(text, 0);
        if (noncharacter < 0) return ToNfcValid(text);

        var result = new StringBuilder(text.Length);
        int start = 0;
        for (; noncharacter >= 0; noncharacter = IndexOfBmpNoncharacter(text, start))
        {
            result.Append(ToNfcValid(text[start..noncharacter])).Append(text[noncharacter]);
            start = noncharacter + 1;
        }
        result.Append(ToNfcValid(text[start..]));
        return result.ToString();
    }

    /// <inheritdoc />
    public override string Normalize(string original) => ToNfc(original);

    /// <inheritdoc />
    public override string Normalize(ReadOnlySpan<char> original) => ToNfc(original.ToString());

    private static string ToNfcValid(string text) =>
        text.IsNormalized(NormalizationForm.FormC) ? text : text.Normalize(NormalizationForm.FormC);

    /// <summary>The index of the first U+FDD0..U+FDEF, U+FFFE or U+FFFF at or after <paramref name="start"/>, or -1.
    /// (Supplementary noncharacters are surrogate pairs, which the runtime normalizes without complaint.)</summary>
    private static int IndexOfBmpNoncharacter(string text, int start)
    {
        for (int i = start; i < text.Length; i++)
        {
            int offset = text.AsSpan(i).IndexOfAnyInRange('\uFDD0', '\uFFFF');
            if (offset < 0) return -1;
            i += offset;
            if (text[i] is <= '\uFDEF' or >= '\uFFFE') return i;
        }
        return -1;
    }
}

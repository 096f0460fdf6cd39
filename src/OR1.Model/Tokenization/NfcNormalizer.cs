using System.Text;
using Microsoft.ML.Tokenizers;

namespace OR1.Model.Tokenization;

/// <summary>
/// tokenizer.json's NFC normalizer (Qwen2's files declare it), plugged into the library's
/// <see cref="BpeTokenizer"/>, which applies it to ordinary text before pre-tokenization; added tokens are
/// matched on the raw text, as in HF. NFC itself is the runtime's (ICU); the project therefore does not
/// run in invariant-globalization mode, where string.Normalize silently does nothing.
/// </summary>
public sealed class NfcNormalizer : Normalizer
{
    /// <summary>The shared instance (no state).</summary>
    public static NfcNormalizer Instance { get; } = new();

    /// <summary><paramref name="text"/> in NFC; the same instance when it already is.</summary>
    public static string ToNfc(string text) => text.IsNormalized(NormalizationForm.FormC) ? text : text.Normalize(NormalizationForm.FormC);

    /// <inheritdoc />
    public override string Normalize(string original) => ToNfc(original);

    /// <inheritdoc />
    public override string Normalize(ReadOnlySpan<char> original) => ToNfc(original.ToString());
}

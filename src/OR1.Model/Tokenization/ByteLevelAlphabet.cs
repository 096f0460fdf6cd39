namespace OR1.Model.Tokenization;

/// <summary>
/// GPT-2's byte-to-unicode table (bytes_to_unicode in the original encoder.py), which byte-level BPE
/// vocabularies such as Qwen2's are written in: printable Latin-1 bytes stand for themselves, the other 68
/// bytes (controls, space, 0x7F-0xA0, soft hyphen) map to U+0100 upwards in byte order, so a space is 'Ġ'
/// and a newline 'Ċ'. Microsoft.ML.Tokenizers applies the same table internally when ByteLevel is set but
/// does not expose it; it is needed here to check that a vocabulary holds every byte (the library silently
/// drops a byte with no vocabulary entry, which would break the encode/decode round trip).
/// </summary>
public static class ByteLevelAlphabet
{
    private static readonly char[] s_byteToChar = Build();

    /// <summary>The vocabulary symbol that stands for byte <paramref name="b"/>.</summary>
    public static char ByteToChar(byte b) => s_byteToChar[b];

    /// <summary>The 256 byte symbols in GPT-2 id order (printable bytes first, then the remapped ones).</summary>
    public static IEnumerable<char> SymbolsInIdOrder()
    {
        for (int b = 0; b < 256; b++)
        {
            if (IsPrintable(b))
            {
                yield return s_byteToChar[b];
            }
        }

        for (int b = 0; b < 256; b++)
        {
            if (!IsPrintable(b))
            {
                yield return s_byteToChar[b];
            }
        }
    }

    private static bool IsPrintable(int b) => (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);

    private static char[] Build()
    {
        var table = new char[256];
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            table[b] = IsPrintable(b) ? (char)b : (char)(256 + next++);
        }

        return table;
    }
}

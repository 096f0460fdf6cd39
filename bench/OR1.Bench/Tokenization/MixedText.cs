using System.Text;

namespace OR1.Bench.Tokenization;

/// <summary>
/// A deterministic mixture of the text a reasoning model reads and writes, for tokenizer throughput: English
/// prose, worked math with LaTeX, code, digit runs, CJK, Arabic, Hebrew, Devanagari and emoji, in paragraphs
/// drawn by a seeded generator. Words repeat as in real text (a few hundred frequent words), so the encoder's
/// word cache is exercised as it is in production, not defeated by random letters nor flattered by one repeated line.
/// </summary>
public static class MixedText
{
    private static readonly string[] Words =
    [
        "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "with", "be", "on", "not", "this", "by", "are",
        "we", "from", "or", "have", "an", "which", "one", "can", "all", "their", "if", "there", "so", "when", "then", "let",
        "number", "sum", "each", "two", "three", "first", "second", "value", "values", "integer", "integers", "prime",
        "triangle", "circle", "radius", "angle", "length", "area", "point", "points", "line", "equation", "solution",
        "function", "derivative", "probability", "expected", "therefore", "since", "because", "consider", "case", "cases",
        "compute", "find", "show", "assume", "suppose", "note", "thus", "hence", "we get", "so the answer", "remainder",
        "divisible", "modulo", "sequence", "terms", "positive", "negative", "real", "complex", "root", "roots",
        "polynomial", "coefficient", "matrix", "vector", "set", "subset", "graph", "vertex", "edge", "path", "count",
        "ways", "arrangements", "choose", "order", "wait", "actually", "hmm", "let me", "double-check", "verify",
        "correct", "mistake", "again", "instead", "maybe", "perhaps", "alternatively", "similarly", "finally", "result",
        "model", "training", "reward", "policy", "gradient", "token", "tokens", "entropy", "loss", "batch", "step",
        "It's", "don't", "we'll", "they're", "I've", "isn't", "can't", "O'Brien", "state-of-the-art", "e.g.", "i.e.",
    ];

    private static readonly string[] MathPieces =
    [
        @"\frac{a}{b}", @"\sqrt{2}", @"x^2 + y^2 = r^2", @"\sum_{k=1}^{n} k = \frac{n(n+1)}{2}", @"\binom{n}{k}",
        @"\int_0^1 x^2\,dx = \frac{1}{3}", @"a \equiv b \pmod{7}", @"\left( \frac{3}{4} \right)^{2}", @"\pi r^2",
        @"\lim_{x \to 0} \frac{\sin x}{x} = 1", @"\boxed{204}", @"f'(x) = 3x^2 - 2x + 1", @"\log_2 8 = 3",
        @"\{1, 2, 3\}", @"(2, \infty)", @"\triangle ABC", @"\angle BAC = 60^\circ", @"|z| = \sqrt{a^2+b^2}",
        @"P(A \cap B) = P(A)P(B)", @"\mathbb{E}[X] = \sum_x x\,p(x)", @"\cdots", @"\le", @"\ge", @"\neq",
    ];

    private static readonly string[] CodeLines =
    [
        "def solve(n: int) -> int:", "    total = 0", "    for i in range(1, n + 1):", "        total += i * i",
        "    return total % 1_000_000_007", "if __name__ == \"__main__\":", "    print(solve(int(input())))",
        "public static int Gcd(int a, int b) => b == 0 ? a : Gcd(b, a % b);", "for (int i = 0; i < n; ++i) {",
        "    sum += values[i];", "}", "const xs = [1, 2, 3].map((x) => x * 2);", "std::vector<int> dp(n + 1, 0);",
        "#include <cstdio>", "SELECT id, name FROM users WHERE age >= 18;", "fn main() { println!(\"{}\", 42); }",
        "\tif (x > 0) return x;", "    // edge case: empty input", "    # O(n log n) with a heap",
    ];

    private static readonly (int Lo, int Hi, int WordLength)[] Scripts =
    [
        (0x4E00, 0x62FF, 0),  // CJK ideographs: no spaces between words
        (0x0627, 0x064A, 5),  // Arabic letters
        (0x05D0, 0x05EA, 4),  // Hebrew letters
        (0x0915, 0x0939, 4),  // Devanagari consonants
        (0x3041, 0x3093, 0),  // Hiragana
        (0xAC00, 0xD7A3, 3),  // Hangul syllables
    ];

    private static readonly string[] Emoji = ["😀", "🎉", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵", "❤️", "🤔", "✅", "🚀", "👩🏻‍💻"];

    /// <summary>At least <paramref name="utf8Bytes"/> bytes of UTF-8 text (whole paragraphs), the same for the same seed.</summary>
    public static string Generate(int utf8Bytes, int seed)
    {
        var random = new Random(seed);
        var text = new StringBuilder(utf8Bytes);
        int bytes = 0;
        while (bytes < utf8Bytes)
        {
            int start = text.Length;
            int kind = random.Next(100);
            if (kind < 45) Prose(text, random);
            else if (kind < 65) Math(text, random);
            else if (kind < 80) Code(text, random);
            else if (kind < 84) Digits(text, random);
            else if (kind < 94) OtherScript(text, random);
            else EmojiLine(text, random);
            text.Append(random.Next(3) == 0 ? "\n\n" : "\n");
            bytes += Encoding.UTF8.GetByteCount(text.ToString(start, text.Length - start));
        }
        return text.ToString();
    }

    private static void Prose(StringBuilder text, Random random)
    {
        int sentences = random.Next(2, 7);
        for (int s = 0; s < sentences; s++)
        {
            int words = random.Next(5, 20);
            for (int w = 0; w < words; w++)
            {
                string word = Words[Zipf(random, Words.Length)];
                if (w == 0) word = char.ToUpperInvariant(word[0]) + word[1..];
                text.Append(word);
                if (w < words - 1) text.Append(random.Next(12) == 0 ? ", " : " ");
            }
            text.Append(random.Next(8) == 0 ? "? " : ". ");
        }
    }

    private static void Math(StringBuilder text, Random random)
    {
        int pieces = random.Next(2, 6);
        for (int p = 0; p < pieces; p++)
        {
            bool inline = random.Next(2) == 0;
            text.Append(inline ? "$" : "\\[ ").Append(MathPieces[random.Next(MathPieces.Length)]).Append(inline ? "$ " : " \\] ");
            text.Append(Words[Zipf(random, Words.Length)]).Append(' ').Append(random.Next(10_000)).Append(' ');
        }
    }

    private static void Code(StringBuilder text, Random random)
    {
        text.Append("```python\n");
        int lines = random.Next(3, 10);
        for (int l = 0; l < lines; l++) text.Append(CodeLines[random.Next(CodeLines.Length)]).Append('\n');
        text.Append("```");
    }

    private static void Digits(StringBuilder text, Random random)
    {
        int runs = random.Next(1, 5);
        for (int r = 0; r < runs; r++)
        {
            int length = random.Next(1, 40);
            for (int d = 0; d < length; d++) text.Append((char)('0' + random.Next(10)));
            text.Append(random.Next(3) switch { 0 => " + ", 1 => ".", _ => ", " });
        }
    }

    private static void OtherScript(StringBuilder text, Random random)
    {
        var (lo, hi, wordLength) = Scripts[random.Next(Scripts.Length)];
        int length = random.Next(10, 80);
        for (int i = 0; i < length; i++)
        {
            text.Append(char.ConvertFromUtf32(random.Next(lo, hi + 1)));
            if (wordLength > 0 && i % wordLength == wordLength - 1) text.Append(' ');
            else if (wordLength == 0 && random.Next(15) == 0) text.Append(random.Next(2) == 0 ? "，" : "。");
        }
    }

    private static void EmojiLine(StringBuilder text, Random random)
    {
        int count = random.Next(1, 6);
        for (int i = 0; i < count; i++)
        {
            text.Append(Words[Zipf(random, Words.Length)]).Append(' ').Append(Emoji[random.Next(Emoji.Length)]).Append(' ');
        }
    }

    /// <summary>An index in [0, n) with roughly Zipfian frequencies, as words have in text.</summary>
    private static int Zipf(Random random, int n) => System.Math.Min(n - 1, (int)(System.Math.Pow(n + 1, random.NextDouble()) - 1));
}

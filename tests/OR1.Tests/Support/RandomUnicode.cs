using System.Text;

namespace OR1.Tests.Support;

/// <summary>Seeded strings of valid Unicode drawn from several blocks, with chosen characters mixed in (tokenizer tests).</summary>
internal static class RandomUnicode
{
    /// <summary>
    /// <paramref name="count"/> strings of up to <paramref name="maxLength"/> code points: a third (or the share
    /// <paramref name="specialOneIn"/> sets) from <paramref name="specials"/>, the rest uniform in one of
    /// <paramref name="ranges"/>, never a surrogate code point.
    /// </summary>
    public static IEnumerable<string> Strings(int count, int seed, int minLength, int maxLength, (int Lo, int Hi)[] ranges, char[] specials, int specialOneIn)
    {
        var random = new Random(seed);
        for (int n = 0; n < count; n++)
        {
            var text = new StringBuilder();
            int length = random.Next(minLength, maxLength);
            for (int i = 0; i < length; i++)
            {
                if (random.Next(specialOneIn) == 0)
                {
                    text.Append(specials[random.Next(specials.Length)]);
                    continue;
                }
                (int lo, int hi) = ranges[random.Next(ranges.Length)];
                int codePoint;
                do codePoint = random.Next(lo, hi + 1);
                while (codePoint is >= 0xD800 and <= 0xDFFF);
                text.Append(char.ConvertFromUtf32(codePoint));
            }
            yield return text.ToString();
        }
    }
}

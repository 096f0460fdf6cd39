using System.Buffers;

namespace OR1.Model.Tokenization;

/// <summary>
/// Finds added tokens in text the way HF's AddedVocabulary does: scanning left to right, at each position
/// the longest added token that starts there wins (leftmost-longest), and matching resumes after it.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, AddedToken[]> _byFirstChar;
    private readonly SearchValues<char> _firstChars;

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        _byFirstChar = tokens
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
        _firstChars = SearchValues.Create(_byFirstChar.Keys.ToArray());
    }

    /// <summary>The added tokens in <paramref name="text"/> with their start offsets, in order, not overlapping.</summary>
    public IEnumerable<(int Offset, AddedToken Token)> Matches(string text)
    {
        int i = 0;
        while (i < text.Length)
        {
            int next = text.AsSpan(i).IndexOfAny(_firstChars);
            if (next < 0)
            {
                yield break;
            }

            i += next;
            AddedToken? found = null;
            foreach (AddedToken candidate in _byFirstChar[text[i]])
            {
                if (text.AsSpan(i).StartsWith(candidate.Content, StringComparison.Ordinal))
                {
                    found = candidate;
                    break;
                }
            }

            if (found is null)
            {
                i++;
                continue;
            }

            yield return (i, found);
            i += found.Content.Length;
        }
    }
}

using System.Text.Json;

namespace OR1.Grpo.Training;

/// <summary>
/// "Did you mean ...?" for a config key or name that is not known: the known one nearest by edit distance
/// (insertions, deletions, substitutions and swaps of two neighbours), offered only when it is close.
/// </summary>
public static class KeySuggestion
{
    /// <summary>
    /// The entry of <paramref name="known"/> that <paramref name="unknown"/> most likely meant, or null when none
    /// is close. Spellings of the same name in another case convention (<c>learningRate</c>, <c>learning-rate</c>,
    /// <c>LEARNING_RATE</c>) match outright; otherwise the nearest key by edit distance is offered when the
    /// distance is at most 2, or at most a third of the key's length. Ties go to the earlier key.
    /// </summary>
    public static string? Nearest(string unknown, IEnumerable<string> known)
    {
        var candidates = known as IReadOnlyCollection<string> ?? known.ToArray();
        string normalized = Normalize(unknown);
        foreach (var key in candidates)
            if (string.Equals(key, normalized, StringComparison.OrdinalIgnoreCase)) return key;

        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (var key in candidates)
        {
            int d = Distance(normalized, key.ToLowerInvariant());
            if (d < bestDistance)
            {
                best = key;
                bestDistance = d;
            }
        }
        return best is not null && IsClose(bestDistance, normalized, best) ? best : null;
    }

    /// <summary>
    /// Whether a key at edit distance <paramref name="distance"/> from what was written is close enough to offer:
    /// at most 2 edits, or at most a third of the longer name; never when every character had to change.
    /// </summary>
    public static bool IsClose(int distance, string written, string key) =>
        distance < Math.Max(written.Length, key.Length) && (distance <= 2 || 3 * distance <= Math.Max(written.Length, key.Length));

    /// <summary>Optimal-string-alignment distance: insertions, deletions, substitutions and adjacent swaps each cost 1.</summary>
    public static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                int v = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) v = Math.Min(v, d[i - 2, j - 2] + 1);
                d[i, j] = v;
            }
        }
        return d[a.Length, b.Length];
    }

    /// <summary>A name as a snake_case key: <c>learningRate</c>, <c>Learning-Rate</c> and <c>learning rate</c> give <c>learning_rate</c>.</summary>
    private static string Normalize(string name)
    {
        string spaced = name.Trim().Replace('-', '_').Replace(' ', '_');
        return JsonNamingPolicy.SnakeCaseLower.ConvertName(spaced);
    }
}

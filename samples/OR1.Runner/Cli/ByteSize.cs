using System.Globalization;

namespace OR1.Runner.Cli;

/// <summary>Memory sizes on the command line: a byte count with an optional unit (KB, MB, GB: powers of 1000; KiB, MiB, GiB: of 1024).</summary>
public static class ByteSize
{
    private static readonly (string Unit, long Factor)[] Units =
    [
        ("KiB", 1L << 10), ("MiB", 1L << 20), ("GiB", 1L << 30), ("TiB", 1L << 40),
        ("KB", 1_000L), ("MB", 1_000_000L), ("GB", 1_000_000_000L), ("TB", 1_000_000_000_000L), ("B", 1L),
    ];

    /// <summary>The bytes <paramref name="text"/> names ("512MiB", "2 GB", "1500000"), or a <see cref="CliException"/> naming <paramref name="option"/>.</summary>
    public static long Parse(string text, string option)
    {
        string s = text.Trim();
        long factor = 1;
        foreach (var (unit, f) in Units)
            if (s.EndsWith(unit, StringComparison.OrdinalIgnoreCase))
            {
                factor = f;
                s = s[..^unit.Length].Trim();
                break;
            }
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) || !(value > 0) || value * factor > long.MaxValue)
            throw new CliException($"{option} is '{text}'; expected a positive size such as 8GiB, 512MiB or a byte count");
        return (long)(value * factor);
    }
}

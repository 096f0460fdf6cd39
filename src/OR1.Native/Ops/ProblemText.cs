using System.Runtime.CompilerServices;

namespace OR1.Native;

/// <summary>
/// The problem text of an <see cref="OpCheck.Require(bool, string, ref ProblemText)"/>, formatted only when the check
/// fails. Every op checks its arguments on every call, and a decode step of the sample's model makes ~100 ops: with the
/// messages built eagerly (shapes formatted, strings allocated) whether or not anything was wrong, the checks made
/// about 67 KB of garbage a step (15 of the 19.3 MB of the rollout engine's Groups call). The compiler passes the
/// condition to this handler first; a condition that holds skips every part of the message.
/// </summary>
[InterpolatedStringHandler]
internal ref struct ProblemText
{
    private DefaultInterpolatedStringHandler _text;

    public ProblemText(int literalLength, int formattedCount, bool condition, out bool shouldAppend)
    {
        shouldAppend = !condition;
        _text = shouldAppend ? new DefaultInterpolatedStringHandler(literalLength, formattedCount) : default;
    }

    public void AppendLiteral(string value) => _text.AppendLiteral(value);

    public void AppendFormatted<T>(T value) => _text.AppendFormatted(value);

    public void AppendFormatted<T>(T value, string? format) => _text.AppendFormatted(value, format);

    public void AppendFormatted(string? value) => _text.AppendFormatted(value);

    /// <summary>The message (once; the handler is spent afterwards).</summary>
    public string ToStringAndClear() => _text.ToStringAndClear();
}

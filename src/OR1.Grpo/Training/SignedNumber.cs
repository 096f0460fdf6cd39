using System.Globalization;

namespace OR1.Grpo.Training;

/// <summary>Numbers with an explicit sign for console lines, where columns of losses are read up and down.</summary>
public static class SignedNumber
{
    /// <summary>
    /// <paramref name="value"/> with <paramref name="decimals"/> decimals and a leading '+' or '-'; a value that shows as
    /// zero (negative zero, or a tiny negative that rounds away) is "+0.000...", never "-0" or "-+0". NaN and infinities
    /// are written as they are.
    /// </summary>
    public static string Format(double value, int decimals)
    {
        if (!double.IsFinite(value)) return value.ToString(CultureInfo.InvariantCulture);
        string magnitude = Math.Abs(value).ToString("F" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        bool showsZero = magnitude.All(c => c is '0' or '.');
        return (value < 0 && !showsZero ? "-" : "+") + magnitude;
    }
}

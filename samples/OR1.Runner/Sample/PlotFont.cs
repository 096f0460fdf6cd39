using ScottPlot;
using SkiaSharp;

namespace OR1.Runner.Sample;

/// <summary>
/// The font the sample's plots are drawn with, shipped inside the program (subsets of DejaVu Sans, see
/// PlotFont.Data.cs) instead of taken from the system.
/// </summary>
/// <remarks>
/// ScottPlot draws with SkiaSharp, whose Linux build (SkiaSharp.NativeAssets.Linux.NoDependencies, which ScottPlot
/// brings) finds fonts only by scanning /usr/share/fonts. On a machine without fonts there (a minimal container, a
/// fresh CI image) every typeface is empty and a plot comes out with no title, labels or tick numbers, without any
/// error. Registering these fonts under a private name and pointing every text of the plot at it makes the
/// plots render the same everywhere, whatever fonts the system has.
/// </remarks>
public static partial class PlotFont
{
    /// <summary>The family name the fonts are registered under (private, so no system font is shadowed).</summary>
    public const string Name = "OR1 Plot Sans";

    private static readonly object s_lock = new();
    private static bool s_registered;
    private static byte[]? s_regular;
    private static byte[]? s_bold;

    /// <summary>Makes <paramref name="plot"/> draw all its text with the embedded font.</summary>
    public static void Apply(Plot plot)
    {
        Register();
        plot.Font.Set(Name);
        plot.Legend.FontName = Name;
        plot.Legend.SetBestFontOnEachRender = false;
    }

    /// <summary>Adds the resolver for <see cref="Name"/> to ScottPlot's font resolvers, once per process.</summary>
    public static void Register()
    {
        lock (s_lock)
        {
            if (s_registered)
            {
                return;
            }

            s_regular = Convert.FromBase64String(RegularBase64);
            s_bold = Convert.FromBase64String(BoldBase64);
            Fonts.FontResolvers.Add(new Resolver());
            s_registered = true;
        }
    }

    /// <summary>The embedded typeface: bold or regular (there are no italics; italic requests get upright glyphs).</summary>
    public static SKTypeface CreateTypeface(bool bold)
    {
        Register();
        byte[] data = (bold ? s_bold : s_regular)!;
        return SKTypeface.FromData(SKData.CreateCopy(data))
            ?? throw new InvalidOperationException("SkiaSharp could not read the embedded plot font");
    }

    private sealed class Resolver : IFontResolver
    {
        public SKTypeface? CreateTypeface(string fontName, FontWeight weight, FontSlant slant, FontSpacing spacing) =>
            fontName == Name ? PlotFont.CreateTypeface((int)weight >= (int)FontWeight.SemiBold) : null;

        public SKTypeface? CreateTypeface(string fontName, bool bold, bool italic) =>
            fontName == Name ? PlotFont.CreateTypeface(bold) : null;
    }
}

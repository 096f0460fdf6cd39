using System.Buffers.Binary;
using System.Text.Json;
using OR1.Grpo.Training;
using OR1.Runner.Sample;

namespace OR1.Tests.Sample;

public class MetricsPlotsTests
{
    private static readonly byte[] PngSignature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>A plausible two-stage run: reward rising, entropy falling, one skipped step, lengths growing in stage 2.</summary>
    internal static List<StepMetrics> SyntheticRun(int steps = 120)
    {
        var run = new List<StepMetrics>();
        for (int step = 1; step <= steps; step++)
        {
            int stage = step <= steps / 2 ? 1 : 2;
            double t = (double)step / steps;
            int groups = 32;
            int all = (int)(groups * (0.2 + 0.4 * t)), none = (int)(groups * (0.5 - 0.35 * t)) + step % 3;
            run.Add(new StepMetrics
            {
                Step = step,
                Stage = stage,
                Skipped = step == 17,
                RewardMean = 0.35 + 0.35 * t + 0.05 * Math.Sin(step),
                SolveAll = all,
                SolveNone = none,
                Partial = groups - all - none,
                Groups = groups,
                KeptGroups = groups - all - none,
                ResponseLengthMean = (stage == 1 ? 30 : 38) + 4 * Math.Sin(step / 7.0),
                ResponseLengthMax = stage == 1 ? 64 : 80 + step % 20,
                TruncationRatio = Math.Max(0, 0.08 - 0.1 * t) + (step % 11 == 0 ? 0.02 : 0),
                Entropy = 0.06 - 0.03 * t + 0.004 * Math.Cos(step),
                EntropyCoefficient = Math.Min(0.005, 0.0005 * step / 10.0),
                EntropyEnabled = true,
            });
        }

        return run;
    }

    internal static string WriteMetricsFile(string dir, IEnumerable<StepMetrics> run)
    {
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "metrics.jsonl");
        File.WriteAllLines(path, run.Select(m => JsonSerializer.Serialize(m, MetricsJson.Lines)));
        return path;
    }

    [Test]
    public void WritesFourPngPlotsFromAMetricsFile()
    {
        string dir = Path.Combine(Path.GetTempPath(), "or1-plots-" + Guid.NewGuid().ToString("N"));
        try
        {
            string metrics = WriteMetricsFile(dir, SyntheticRun());
            var written = MetricsPlots.Write(metrics, Path.Combine(dir, "plots"), new MetricsPlotOptions { EntropyTarget = 0.04 });
            Assert.That(written.Select(Path.GetFileName), Is.EquivalentTo(new[] { "reward.png", "accuracy.png", "entropy.png", "length.png" }));
            foreach (string path in written)
            {
                byte[] png = File.ReadAllBytes(path);
                Assert.That(png[..8], Is.EqualTo(PngSignature), path);
                Assert.That(png.Length, Is.GreaterThan(10_000), $"{path}: a plot with lines and text, not an empty image");
                // IHDR: width and height, big-endian, right after the signature and the chunk header.
                Assert.That(BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(16)), Is.EqualTo(900));
                Assert.That(BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(20)), Is.EqualTo(500));
            }

            Assert.That(Directory.GetFiles(Path.Combine(dir, "plots")), Has.Length.EqualTo(4), "no temporary files left behind");
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void ReadsEveryLineAndFindsStageBoundaries()
    {
        string dir = Path.Combine(Path.GetTempPath(), "or1-plots-" + Guid.NewGuid().ToString("N"));
        try
        {
            var run = SyntheticRun(40);
            string metrics = WriteMetricsFile(dir, run);
            File.AppendAllText(metrics, "\n\n");
            var read = MetricsPlots.ReadMetrics(metrics);
            Assert.That(read, Has.Count.EqualTo(40));
            Assert.That(read[16].Skipped, Is.True);
            Assert.That(read[5].RewardMean, Is.EqualTo(run[5].RewardMean));
            Assert.That(read[5].EntropyCoefficient, Is.EqualTo(run[5].EntropyCoefficient));
            Assert.That(read[30].Stage, Is.EqualTo(2));

            File.AppendAllText(metrics, "{not json\n");
            var e = Assert.Throws<InvalidDataException>(() => MetricsPlots.ReadMetrics(metrics));
            Assert.That(e!.Message, Does.Contain("line 43"));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void AnEmptyOrAllSkippedRunStillGivesPlots()
    {
        string dir = Path.Combine(Path.GetTempPath(), "or1-plots-" + Guid.NewGuid().ToString("N"));
        try
        {
            var written = MetricsPlots.Write([new StepMetrics { Step = 1, Stage = 1, Skipped = true }], dir);
            Assert.That(written, Has.Count.EqualTo(4));
            Assert.That(written.All(p => File.ReadAllBytes(p).AsSpan(0, 8).SequenceEqual(PngSignature)));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void TextUsesTheEmbeddedFontWhateverTheSystemHas()
    {
        using var regular = PlotFont.CreateTypeface(bold: false);
        using var bold = PlotFont.CreateTypeface(bold: true);
        Assert.That(regular.FamilyName, Is.EqualTo("DejaVu Sans"));
        Assert.That(bold.IsBold, Is.True);
        foreach (var typeface in new[] { regular, bold })
        {
            ushort[] glyphs = typeface.GetGlyphs("step reward 0123456789.-e");
            Assert.That(glyphs, Has.None.EqualTo((ushort)0), "every character used in the plots has a glyph");
        }

        PlotFont.Register();
        var resolved = ScottPlot.Fonts.GetTypeface(PlotFont.Name, bold: false, italic: false);
        Assert.That(resolved.FamilyName, Is.EqualTo("DejaVu Sans"), "ScottPlot resolves the private font name to the embedded font");
    }
}

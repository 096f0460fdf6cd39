using System.Globalization;
using System.Text.Json;
using OR1.Grpo.Training;
using ScottPlot;

namespace OR1.Runner.Sample;

/// <summary>Settings of <see cref="MetricsPlots"/>.</summary>
public sealed record MetricsPlotOptions
{
    /// <summary>The entropy target of the adaptive entropy control, drawn as a line on the entropy plot; null for none.</summary>
    public double? EntropyTarget { get; init; }

    /// <summary>Image width in pixels.</summary>
    public int Width { get; init; } = 900;

    /// <summary>Image height in pixels.</summary>
    public int Height { get; init; } = 500;

    /// <summary>Steps in the trailing moving averages (reward, group outcomes); 1 draws the raw values only.</summary>
    public int MovingAverageWindow { get; init; } = 20;
}

/// <summary>
/// PNG plots of a MAGIC run's metrics.jsonl (one <see cref="StepMetrics"/> per line, snake_case names), drawn with
/// ScottPlot: <c>reward.png</c>, <c>accuracy.png</c>, <c>entropy.png</c> and <c>length.png</c>. Skipped steps are
/// left out; a dashed vertical line marks where each stage after the first begins. Text is drawn with a font shipped
/// in the program (<see cref="PlotFont"/>), so the plots render on a machine with no fonts installed.
/// </summary>
public static class MetricsPlots
{
    /// <summary>Mean reward per step and its moving average.</summary>
    public const string RewardFile = "reward.png";

    /// <summary>Fractions of groups solved by all samples, by some, by none.</summary>
    public const string AccuracyFile = "accuracy.png";

    /// <summary>Entropy e_k, the entropy coefficient c_k (second axis) and the target.</summary>
    public const string EntropyFile = "entropy.png";

    /// <summary>Mean and longest response length, and the truncation ratio (second axis).</summary>
    public const string LengthFile = "length.png";

    private static readonly Color Blue = Color.FromHex("#1f77b4");
    private static readonly Color Orange = Color.FromHex("#ff7f0e");
    private static readonly Color Green = Color.FromHex("#2ca02c");
    private static readonly Color Red = Color.FromHex("#d62728");
    private static readonly Color Grey = Color.FromHex("#7f7f7f");

    /// <summary>
    /// Reads <paramref name="metricsPath"/> and writes the four plots into <paramref name="outputDirectory"/> (created if
    /// needed). Returns the paths written.
    /// </summary>
    /// <exception cref="InvalidDataException">a line is not a JSON object of step metrics; the message names the line.</exception>
    public static IReadOnlyList<string> Write(string metricsPath, string outputDirectory, MetricsPlotOptions? options = null) =>
        Write(ReadMetrics(metricsPath), outputDirectory, options);

    /// <summary>Writes the four plots of <paramref name="metrics"/> into <paramref name="outputDirectory"/>; returns the paths written.</summary>
    public static IReadOnlyList<string> Write(IReadOnlyList<StepMetrics> metrics, string outputDirectory, MetricsPlotOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        ArgumentNullException.ThrowIfNull(outputDirectory);
        options ??= new MetricsPlotOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Width, 100);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Height, 100);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MovingAverageWindow, 1);
        Directory.CreateDirectory(outputDirectory);

        StepMetrics[] steps = metrics.Where(m => !m.Skipped).OrderBy(m => m.Step).ToArray();
        IReadOnlyList<(double X, int Stage)> boundaries = StageBoundaries(metrics);
        var written = new List<string>(4);
        void Save(Plot plot, string name)
        {
            string path = Path.Combine(outputDirectory, name);
            SavePng(plot, path, options.Width, options.Height);
            written.Add(path);
        }

        Save(RewardPlot(steps, boundaries, options), RewardFile);
        Save(AccuracyPlot(steps, boundaries, options), AccuracyFile);
        Save(EntropyPlot(steps, boundaries, options), EntropyFile);
        Save(LengthPlot(steps, boundaries, options), LengthFile);
        return written;
    }

    /// <summary>Every line of a metrics.jsonl file (blank lines ignored; skipped steps included).</summary>
    /// <exception cref="FileNotFoundException">no such file.</exception>
    /// <exception cref="InvalidDataException">a line is not a JSON object of step metrics.</exception>
    public static IReadOnlyList<StepMetrics> ReadMetrics(string metricsPath)
    {
        ArgumentNullException.ThrowIfNull(metricsPath);
        if (!File.Exists(metricsPath))
        {
            throw new FileNotFoundException($"{metricsPath}: metrics file not found", metricsPath);
        }

        var result = new List<StepMetrics>();
        int lineNumber = 0;
        foreach (string line in File.ReadLines(metricsPath))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            StepMetrics? step;
            try
            {
                step = JsonSerializer.Deserialize<StepMetrics>(line, MetricsJson.Lines);
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{metricsPath} line {lineNumber}: not a step-metrics JSON object ({e.Message})", e);
            }

            result.Add(step ?? throw new InvalidDataException($"{metricsPath} line {lineNumber}: null instead of a step-metrics object"));
        }

        return result;
    }

    /// <summary>
    /// Where each stage after the first begins: half a step before its first step (skipped steps count, so a stage
    /// that begins with skipped steps is marked where it began).
    /// </summary>
    internal static IReadOnlyList<(double X, int Stage)> StageBoundaries(IReadOnlyList<StepMetrics> metrics)
    {
        var boundaries = new List<(double, int)>();
        StepMetrics[] ordered = metrics.OrderBy(m => m.Step).ToArray();
        for (int i = 1; i < ordered.Length; i++)
        {
            if (ordered[i].Stage != ordered[i - 1].Stage)
            {
                boundaries.Add((ordered[i].Step - 0.5, ordered[i].Stage));
            }
        }

        return boundaries;
    }

    /// <summary>The trailing mean over the last <paramref name="window"/> values (fewer at the start).</summary>
    internal static double[] MovingAverage(IReadOnlyList<double> values, int window)
    {
        var result = new double[values.Count];
        double sum = 0;
        for (int i = 0; i < values.Count; i++)
        {
            sum += values[i];
            if (i >= window)
            {
                sum -= values[i - window];
            }

            result[i] = sum / Math.Min(i + 1, window);
        }

        return result;
    }

    private static Plot RewardPlot(StepMetrics[] steps, IReadOnlyList<(double X, int Stage)> boundaries, MetricsPlotOptions options)
    {
        Plot plot = NewPlot("Reward", "mean reward of the step's responses");
        double[] x = steps.Select(s => (double)s.Step).ToArray();
        double[] reward = steps.Select(s => s.RewardMean).ToArray();
        AddLine(plot, x, reward, Blue.WithAlpha(options.MovingAverageWindow > 1 ? 0.35 : 1), 1, "reward mean");
        if (options.MovingAverageWindow > 1)
        {
            AddLine(plot, x, MovingAverage(reward, options.MovingAverageWindow), Blue, 2.5f, $"moving average ({options.MovingAverageWindow} steps)");
        }

        plot.Axes.AutoScaleX();
        plot.Axes.SetLimitsY(-0.02, 1.02);
        MarkStages(plot, boundaries);
        plot.ShowLegend(Alignment.UpperLeft);
        return plot;
    }

    private static Plot AccuracyPlot(StepMetrics[] steps, IReadOnlyList<(double X, int Stage)> boundaries, MetricsPlotOptions options)
    {
        Plot plot = NewPlot("Groups by outcome", "fraction of the step's groups");
        StepMetrics[] withGroups = steps.Where(s => s.Groups > 0).ToArray();
        double[] x = withGroups.Select(s => (double)s.Step).ToArray();
        (string Label, Color Color, Func<StepMetrics, int> Count)[] series =
        [
            ("solved by all samples (solve_all)", Green, s => s.SolveAll),
            ("solved by some (partial, kept)", Blue, s => s.Partial),
            ("solved by none (solve_none)", Red, s => s.SolveNone),
        ];
        foreach ((string label, Color color, Func<StepMetrics, int> count) in series)
        {
            double[] fraction = withGroups.Select(s => (double)count(s) / s.Groups).ToArray();
            if (options.MovingAverageWindow > 1)
            {
                AddLine(plot, x, fraction, color.WithAlpha(0.25), 1, null);
                AddLine(plot, x, MovingAverage(fraction, options.MovingAverageWindow), color, 2.5f, label);
            }
            else
            {
                AddLine(plot, x, fraction, color, 1.5f, label);
            }
        }

        plot.Axes.AutoScaleX();
        plot.Axes.SetLimitsY(-0.02, 1.02);
        MarkStages(plot, boundaries);
        plot.ShowLegend(Alignment.UpperRight);
        return plot;
    }

    private static Plot EntropyPlot(StepMetrics[] steps, IReadOnlyList<(double X, int Stage)> boundaries, MetricsPlotOptions options)
    {
        Plot plot = NewPlot("Entropy and entropy coefficient", "entropy e_k (nats per token)");
        double[] x = steps.Select(s => (double)s.Step).ToArray();
        AddLine(plot, x, steps.Select(s => s.Entropy).ToArray(), Blue, 1.5f, "entropy e_k (left axis)");
        if (options.EntropyTarget is double target)
        {
            var line = plot.Add.HorizontalLine(target, 1.5f, Green, LinePattern.Dashed);
            line.LegendText = $"target {target.ToString("0.###", CultureInfo.InvariantCulture)} (left axis)";
        }

        var coefficient = AddLine(plot, x, steps.Select(s => s.EntropyCoefficient).ToArray(), Orange, 1.5f, "coefficient c_k (right axis)");
        coefficient.Axes.YAxis = plot.Axes.Right;
        plot.Axes.Right.Label.Text = "entropy coefficient c_k";
        plot.Axes.Right.Label.FontName = PlotFont.Name;
        plot.Axes.Right.TickLabelStyle.FontName = PlotFont.Name;

        plot.Axes.AutoScale();
        plot.Axes.SetLimitsY(0, Math.Max(MaxOrZero(steps.Select(s => s.Entropy)), options.EntropyTarget ?? 0) * 1.15 + 1e-9);
        plot.Axes.SetLimitsY(0, MaxOrZero(steps.Select(s => s.EntropyCoefficient)) * 1.15 + 1e-9, plot.Axes.Right);
        MarkStages(plot, boundaries);
        plot.ShowLegend(Alignment.UpperRight);
        return plot;
    }

    private static Plot LengthPlot(StepMetrics[] steps, IReadOnlyList<(double X, int Stage)> boundaries, MetricsPlotOptions options)
    {
        Plot plot = NewPlot("Response length and truncation", "response length (tokens)");
        double[] x = steps.Select(s => (double)s.Step).ToArray();
        AddLine(plot, x, steps.Select(s => s.ResponseLengthMean).ToArray(), Blue, 1.5f, "mean length (left axis)");
        AddLine(plot, x, steps.Select(s => (double)s.ResponseLengthMax).ToArray(), Grey, 1, "longest response (left axis)");
        var truncation = AddLine(plot, x, steps.Select(s => s.TruncationRatio).ToArray(), Red, 1.5f, "truncation ratio (right axis)");
        truncation.Axes.YAxis = plot.Axes.Right;
        plot.Axes.Right.Label.Text = "truncation ratio (fraction of responses)";
        plot.Axes.Right.Label.FontName = PlotFont.Name;
        plot.Axes.Right.TickLabelStyle.FontName = PlotFont.Name;

        plot.Axes.AutoScale();
        plot.Axes.SetLimitsY(0, MaxOrZero(steps.Select(s => (double)s.ResponseLengthMax)) * 1.15 + 1);
        plot.Axes.SetLimitsY(0, Math.Max(1.0, MaxOrZero(steps.Select(s => s.TruncationRatio))) * 1.02, plot.Axes.Right);
        MarkStages(plot, boundaries);
        plot.ShowLegend(Alignment.UpperLeft);
        return plot;
    }

    private static Plot NewPlot(string title, string yLabel)
    {
        var plot = new Plot();
        PlotFont.Apply(plot);
        plot.Title(title);
        plot.XLabel("step");
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.YLabel(yLabel);
        return plot;
    }

    private static ScottPlot.Plottables.Scatter AddLine(Plot plot, double[] x, double[] y, Color color, float width, string? label)
    {
        var scatter = plot.Add.ScatterLine(x, y, color);
        scatter.LineWidth = width;
        if (label is not null)
        {
            scatter.LegendText = label;
        }

        return scatter;
    }

    /// <summary>
    /// A dashed vertical line where each stage after the first begins, labelled "stage N" just right of the line at
    /// the top of the data area (inside it: above it the label would cover the title). Call after the axis limits are final.
    /// </summary>
    private static void MarkStages(Plot plot, IReadOnlyList<(double X, int Stage)> boundaries)
    {
        double top = plot.Axes.GetLimits().Top;
        foreach ((double x, int stage) in boundaries)
        {
            plot.Add.VerticalLine(x, 1.5f, Grey, LinePattern.Dashed);
            var label = plot.Add.Text($"stage {stage.ToString(CultureInfo.InvariantCulture)}", x, top);
            label.LabelAlignment = Alignment.UpperLeft;
            label.LabelFontName = PlotFont.Name;
            label.LabelFontSize = 13;
            label.LabelFontColor = Grey;
            label.LabelBackgroundColor = Colors.White.WithAlpha(0.8);
            label.OffsetX = 4;
            label.OffsetY = 4;
        }
    }

    private static double MaxOrZero(IEnumerable<double> values)
    {
        double max = 0;
        foreach (double v in values)
        {
            if (double.IsFinite(v) && v > max)
            {
                max = v;
            }
        }

        return max;
    }

    private static void SavePng(Plot plot, string path, int width, int height)
    {
        byte[] png = plot.GetImageBytes(width, height, ImageFormat.Png);
        string temp = path + $".{Environment.ProcessId}.tmp";
        try
        {
            File.WriteAllBytes(temp, png);
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
    }
}

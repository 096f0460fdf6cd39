using System.Diagnostics;
using System.Globalization;
using Spectre.Console;

namespace OR1.Runner.Cli;

/// <summary>
/// Progress of a long command on stderr (stdout stays for results): a live Spectre.Console bar with elapsed and
/// remaining time when stderr is a terminal, as the sample shows; a plain line at every ~5% and at the end when it is
/// redirected (a log file gets the first report and then one line per 5%, not a carriage-return stream). The work reports (done, total, detail);
/// the detail is the command's own numbers (tokens/s, a running score).
/// </summary>
public static class ProgressDisplay
{
    /// <summary>Reports one update: units done, units in total, and a short detail text.</summary>
    public delegate void Update(long done, long total, string detail);

    /// <summary>Runs <paramref name="work"/>, showing what it reports under <paramref name="label"/>.</summary>
    public static T Run<T>(string label, Func<Update, T> work)
    {
        if (!Console.IsErrorRedirected)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            T result = default!;
            console.Progress().AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(context =>
                {
                    var task = context.AddTask(Markup.Escape(label), maxValue: 1);
                    result = work((done, total, detail) =>
                    {
                        task.MaxValue = Math.Max(1, total);
                        task.Value = done;
                        task.Description = Markup.Escape(detail.Length == 0 ? label : $"{label}  {detail}");
                    });
                    task.Value = task.MaxValue;
                });
            return result;
        }

        var clock = Stopwatch.StartNew();
        int printed = -1;
        return work((done, total, detail) =>
        {
            int twentieth = total <= 0 ? 20 : (int)Math.Min(20, done * 20 / total);
            if (twentieth <= printed) return;
            printed = twentieth;
            Console.Error.WriteLine(PlainLine(label, done, total, detail, clock.Elapsed));
        });
    }

    /// <summary>"label: 1,234/6,400 (19%)  detail  elapsed 0:01:23  remaining 0:05:40".</summary>
    public static string PlainLine(string label, long done, long total, string detail, TimeSpan elapsed)
    {
        var culture = CultureInfo.InvariantCulture;
        double fraction = total <= 0 ? 1 : (double)done / total;
        string remaining = done <= 0 || fraction >= 1 ? (fraction >= 1 ? "0:00:00" : "?") : Clock(TimeSpan.FromSeconds(elapsed.TotalSeconds * (1 - fraction) / fraction));
        return string.Create(culture, $"{label}: {done:N0}/{total:N0} ({fraction * 100:F0}%)  {(detail.Length > 0 ? detail + "  " : "")}elapsed {Clock(elapsed)}  remaining {remaining}");
    }

    private static string Clock(TimeSpan t) => $"{(int)t.TotalHours}:{t.Minutes:00}:{t.Seconds:00}";
}

using System.Globalization;
using OR1.Native;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace OR1.Runner.Cli;

/// <summary>
/// The backends of <see cref="Backends.Inspect"/> as a Spectre.Console table, one row each: whether it starts, its
/// facts (device, memory, library versions, where the kernels come from, precisions) or why it does not start, and its
/// op check. Colours only on a terminal; elsewhere (a log, a pipe, a test) plain text at a fixed width.
/// </summary>
public static class BackendTable
{
    // Wide enough that a GPU row's facts fit on their lines in a log; a terminal uses its own width.
    private const int RedirectedWidth = 160;

    public static void Write(TextWriter output, IReadOnlyList<BackendReport> rows)
    {
        bool terminal = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(output),
            Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
        });
        if (!terminal) console.Profile.Width = RedirectedWidth;
        var table = new Table()
            .AddColumn("backend")
            .AddColumn("starts")
            .AddColumn("facts, or why it does not start")
            .AddColumn("op check");
        foreach (var row in rows)
        {
            table.AddRow(
                new Text(row.Name),
                new Markup(row.Starts ? "[green]yes[/]" : "[yellow]no[/]"),
                new Text(row.Facts is { } facts ? string.Join('\n', FactLines(facts)) : row.Reason ?? ""),
                CheckCell(row.Check));
        }
        console.Write(table);
    }

    /// <summary>The facts of one backend, a line per subject.</summary>
    public static IEnumerable<string> FactLines(BackendFacts facts)
    {
        if (facts.Gpu is { } gpu)
        {
            yield return $"{gpu.Name}, compute capability {gpu.ComputeCapability}, {gpu.Multiprocessors} SMs";
            yield return $"memory: {Gib(gpu.TotalMemoryBytes)} total, {(gpu.FreeMemoryBytes is { } free ? Gib(free) : "?")} free";
            yield return facts.Kind == BackendKind.Cuda
                ? $"driver {gpu.DriverVersion}, NVRTC {gpu.NvrtcVersion ?? "not found"}, cuBLAS {gpu.CublasVersion ?? "not used (builtin GEMM kernels)"}"
                : $"driver {gpu.DriverVersion} (NVRTC and cuBLAS not used)";
        }
        if (facts.Host is { } host)
        {
            yield return $"{host.Threads} threads, {host.InstructionSets}, {host.VectorBits}-bit vectors{(host.Avx512 ? "" : ", no AVX-512")}";
            if (host.Emulation is { } emulation) yield return emulation;
        }
        yield return $"kernels: {facts.Kernels}";
        yield return $"precisions: {string.Join(", ", facts.StorageTypes.Select(Precision))}";
    }

    private static IRenderable CheckCell(BackendCheckResult? check)
    {
        if (check is null) return new Text("-");
        var lines = new List<string>();
        string verdict = check.Passed ? "[green]pass[/]" : "[red]FAIL[/]";
        lines.Add(check.Error is null ? $"{verdict}, max diff {Number(check.MaxDifference ?? double.NaN)}" : $"{verdict}: {Markup.Escape(check.Error)}");
        int width = check.Ops.Count == 0 ? 0 : check.Ops.Max(o => o.Op.Length);
        foreach (var op in check.Ops)
            lines.Add(Markup.Escape($"  {op.Op.PadRight(width)}  {Number(op.MaxDifference)}") + (op.Passed ? "" : " [red]> tolerance[/]"));
        lines.Add(Markup.Escape($"vs {check.Reference}, tolerance {Number(BackendCheck.Tolerance)}"));
        return new Markup(string.Join('\n', lines));
    }

    private static string Precision(DType dtype) => dtype switch
    {
        DType.Float32 => "fp32",
        DType.BFloat16 => "bf16",
        _ => dtype.ToString(),
    };

    private static string Gib(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F1} GiB");

    /// <summary>0, or two significant digits with an exponent: differences span 1e-8 to 1.</summary>
    public static string Number(double value) =>
        value == 0 ? "0" : double.IsFinite(value) ? value.ToString("0.0e+0", CultureInfo.InvariantCulture) : value.ToString(CultureInfo.InvariantCulture);
}

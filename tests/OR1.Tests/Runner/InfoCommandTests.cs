using System.Text.Json;
using System.Text.RegularExpressions;
using OR1.Native;
using OR1.Native.Cpu;
using OR1.Runner;
using OR1.Runner.Cli;
using OR1.Runner.Commands;

namespace OR1.Tests.Runner;

/// <summary>
/// `or1 info` without --device: a table row for every name of <see cref="Backends.Names"/>, with facts when it starts
/// and the reason when it does not; the cpu and emu rows pass their op check; --json says the same; a perturbed result
/// is a failed check and exit code 1; --device keeps the earlier check and adds the table, even when its backend does
/// not start. The table is read back cell by cell, as a user reads it.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class InfoCommandTests
{
    private int _textCode;
    private string _text = null!;
    private int _jsonCode;
    private JsonElement _json;

    [OneTimeSetUp]
    public void RunInfo()
    {
        (_textCode, _text, _) = Info();
        // --json through the command line, so the option's wiring is tested too.
        var saved = Console.Out;
        var captured = new StringWriter();
        Console.SetOut(captured);
        try
        {
            _jsonCode = Program.Main(["info", "--json"]);
        }
        finally
        {
            Console.SetOut(saved);
        }
        using var document = JsonDocument.Parse(captured.ToString());
        _json = document.RootElement.Clone();
    }

    private static (int Code, string Output, string Error) Info(string? device = null, bool json = false, Action<string, string, float[]>? beforeCompare = null)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = InfoCommand.Run(device, json, output, error, beforeCompare);
        return (code, output.ToString(), error.ToString());
    }

    private static JsonElement JsonRow(JsonElement report, string name) =>
        report.GetProperty("backends").EnumerateArray().Single(b => b.GetProperty("name").GetString() == name);

    [Test]
    public void WithoutDeviceTheTableListsEveryBackendWithFactsOrAReason()
    {
        var rows = TableRows(_text);
        Assert.That(rows.Keys, Is.EqualTo(Backends.Names), _text);
        foreach (string name in Backends.Names)
        {
            var row = rows[name];
            var json = JsonRow(_json, name);
            if (row.Starts == "yes")
            {
                Assert.That(row.Facts, Does.Contain("kernels: ").And.Contain("precisions: fp32"), $"{name}:\n{_text}");
                Assert.That(row.Facts, Does.Match(json.GetProperty("facts").GetProperty("gpu").ValueKind == JsonValueKind.Object
                    ? @"compute capability \d+\.\d+, \d+ SMs" : @"\d+ threads, "), $"{name}: a GPU row has the device, a host row the threads");
                Assert.That(row.Check, Does.Match("^(pass|FAIL)"), $"{name}: a started backend has a verdict");
            }
            else
            {
                Assert.That(row.Starts, Is.EqualTo("no"), _text);
                Assert.That(Squeeze(row.Facts), Is.Not.Empty.And.EqualTo(Squeeze(json.GetProperty("reason").GetString()!)), $"{name}: the reason, whole");
                Assert.That(row.Check, Is.EqualTo("-"));
            }
        }
        Assert.That(_text, Does.Contain("Kernel files (").And.Contain("CUDA sources for NVRTC: ").And.Match(@"CUDA libraries: driver \S+, NVRTC \S+, cuBLAS \S+"));
        Assert.That(_text, Does.Not.Contain("GRPO advantages of rewards"), "the --device check runs only when asked for");
    }

    [Test]
    public void TheCpuAndEmuRowsPassTheirOpCheckHere()
    {
        Assert.That(_textCode, Is.Zero, _text);
        Assert.That(_jsonCode, Is.Zero);
        var rows = TableRows(_text);
        var cpu = JsonRow(_json, "cpu");
        Assert.That(cpu.GetProperty("starts").GetBoolean(), Is.True);
        Assert.That(cpu.GetProperty("check").GetProperty("passed").GetBoolean(), Is.True);
        Assert.That(cpu.GetProperty("check").GetProperty("reference").GetString(), Is.EqualTo("double precision on the host"));
        Assert.That(cpu.GetProperty("check").GetProperty("ops").EnumerateArray().Select(o => o.GetProperty("op").GetString()), Is.EqualTo(BackendCheck.Ops));
        Assert.That(cpu.GetProperty("check").GetProperty("max_difference").GetDouble(), Is.LessThanOrEqualTo(BackendCheck.Tolerance));
        Assert.That(rows["cpu"].Check, Does.StartWith("pass, max diff "));

        var emu = JsonRow(_json, "emu");
        if (!emu.GetProperty("starts").GetBoolean())
        {
            string reason = emu.GetProperty("reason").GetString()!;
            if (Environment.GetEnvironmentVariable("OR1_REQUIRE_EMU") == "1") Assert.Fail(reason);
            Assert.Ignore(reason);
        }
        Assert.That(emu.GetProperty("check").GetProperty("passed").GetBoolean(), Is.True);
        Assert.That(emu.GetProperty("check").GetProperty("reference").GetString(), Is.EqualTo("cpu backend"));
        Assert.That(emu.GetProperty("facts").GetProperty("host").GetProperty("emulated_architecture").GetInt32(), Is.EqualTo(90).Or.EqualTo(80));
        Assert.That(emu.GetProperty("facts").GetProperty("storage_types").EnumerateArray().Select(t => t.GetString()), Is.EqualTo(new[] { "Float32", "BFloat16" }));
        Assert.That(rows["emu"].Check, Does.StartWith("pass, max diff "));
        Assert.That(rows["emu"].Facts, Does.Contain("emulates sm_").And.Contain("precisions: fp32, bf16"));
    }

    [Test]
    public void JsonHasTheSameRowsAsTheTable()
    {
        var rows = TableRows(_text);
        var backends = _json.GetProperty("backends").EnumerateArray().ToList();
        Assert.That(backends.Select(b => b.GetProperty("name").GetString()), Is.EqualTo(Backends.Names));
        foreach (var backend in backends)
        {
            string name = backend.GetProperty("name").GetString()!;
            bool starts = backend.GetProperty("starts").GetBoolean();
            Assert.That(rows[name].Starts, Is.EqualTo(starts ? "yes" : "no"), name);
            if (starts)
            {
                var facts = backend.GetProperty("facts");
                Assert.That(backend.GetProperty("reason").ValueKind, Is.EqualTo(JsonValueKind.Null), name);
                Assert.That(Squeeze(rows[name].Facts), Does.Contain(Squeeze($"kernels: {facts.GetProperty("kernels").GetString()}")), name);
                bool gpu = facts.GetProperty("gpu").ValueKind == JsonValueKind.Object, host = facts.GetProperty("host").ValueKind == JsonValueKind.Object;
                Assert.That(gpu ^ host, Is.True, $"{name}: either a GPU's facts or the host's");
                if (host)
                    Assert.That(rows[name].Facts, Does.StartWith($"{facts.GetProperty("host").GetProperty("threads").GetInt32()} threads, "));
                else
                    Assert.That(rows[name].Facts, Does.StartWith(facts.GetProperty("gpu").GetProperty("name").GetString()!));
                Assert.That(rows[name].Check, Does.StartWith(backend.GetProperty("check").GetProperty("passed").GetBoolean() ? "pass" : "FAIL"));
            }
            else
            {
                Assert.That(backend.GetProperty("facts").ValueKind, Is.EqualTo(JsonValueKind.Null), name);
                Assert.That(backend.GetProperty("check").ValueKind, Is.EqualTo(JsonValueKind.Null), name);
                Assert.That(Squeeze(rows[name].Facts), Is.EqualTo(Squeeze(backend.GetProperty("reason").GetString()!)), name);
            }
        }
        Assert.That(_json.GetProperty("checks_passed").GetBoolean(), Is.True);
        Assert.That(_json.GetProperty("device").ValueKind, Is.EqualTo(JsonValueKind.Null));
        Assert.That(_json.GetProperty("kernel_files").GetProperty("cuda_sources").GetInt32(), Is.GreaterThan(0));
    }

    [Test]
    public void APerturbedResultIsAFailedCheckAndExitCodeOne()
    {
        // The seam: the cpu row's MatMul result is changed after it ran, before it is compared.
        void Perturb(string backend, string op, float[] values)
        {
            if (backend == "cpu" && op == nameof(IBackend.MatMul)) values[3] += 0.5f;
        }

        var (code, output, error) = Info(json: true, beforeCompare: Perturb);
        Assert.That(code, Is.EqualTo(1), error);
        using var document = JsonDocument.Parse(output);
        var check = JsonRow(document.RootElement, "cpu").GetProperty("check");
        Assert.That(check.GetProperty("passed").GetBoolean(), Is.False);
        var matMul = check.GetProperty("ops").EnumerateArray().Single(o => o.GetProperty("op").GetString() == "MatMul");
        Assert.That(matMul.GetProperty("passed").GetBoolean(), Is.False);
        Assert.That(matMul.GetProperty("max_difference").GetDouble(), Is.EqualTo(0.5).Within(1e-3));
        Assert.That(check.GetProperty("ops").EnumerateArray().Where(o => o.GetProperty("op").GetString() != "MatMul").Select(o => o.GetProperty("passed").GetBoolean()), Is.All.True);
        Assert.That(document.RootElement.GetProperty("checks_passed").GetBoolean(), Is.False);
        Assert.That(document.RootElement.GetProperty("exit_code").GetInt32(), Is.EqualTo(1));
        Assert.That(error, Does.Contain("op check failed on cpu (MatMul: 5.0e-1 > 1.0e-4)"));

        var (textCode, text, _) = Info(beforeCompare: Perturb);
        Assert.That(textCode, Is.EqualTo(1));
        Assert.That(TableRows(text)["cpu"].Check, Does.StartWith("FAIL, max diff 5.0e-1").And.Contain("MatMul 5.0e-1 > tolerance"), text);
    }

    [Test]
    public void ANaNOrAThrowingOpFailsTheCheckWithoutAnException()
    {
        using var cpu = new CpuBackend();
        var nan = BackendCheck.Run(cpu, beforeCompare: (op, values) => values[0] = float.NaN);
        Assert.That(nan.Passed, Is.False);
        Assert.That(nan.Ops.Select(o => double.IsNaN(o.MaxDifference)), Is.All.True);
        Assert.That(nan.MaxDifference, Is.NaN);

        var thrown = BackendCheck.Run(cpu, beforeCompare: (op, _) =>
        {
            if (op == nameof(IBackend.RmsNormForward)) throw new InvalidOperationException("a kernel failed to load");
        });
        Assert.That(thrown.Passed, Is.False);
        Assert.That(thrown.Error, Is.EqualTo("InvalidOperationException: a kernel failed to load"));
        Assert.That(thrown.Ops.Select(o => o.Op), Is.EqualTo(new[] { "MatMul" }), "the ops before the failure are kept");
    }

    [Test]
    public void WithDeviceTheEarlierCheckComesFirstThenTheTable()
    {
        var (code, output, _) = Info(device: "CPU");
        Assert.That(code, Is.Zero, output);
        Assert.That(output, Does.StartWith("Backend: Cpu ("));
        Assert.That(output, Does.Contain("GRPO advantages of rewards [1, 0, 1, 1]: [0.5000, -1.5000, 0.5000, 0.5000]"));
        Assert.That(output.IndexOf("GRPO advantages", StringComparison.Ordinal), Is.LessThan(output.IndexOf("Backends on this machine:", StringComparison.Ordinal)));
        Assert.That(TableRows(output).Keys, Is.EqualTo(Backends.Names));
    }

    [Test]
    public void ADeviceThatDoesNotStartStillGetsTheTableAndExitCodeTwo()
    {
        string? missing = Backends.Names.FirstOrDefault(name => !JsonRow(_json, name).GetProperty("starts").GetBoolean());
        if (missing is null) Assert.Ignore("every backend starts on this machine");
        string reason = JsonRow(_json, missing).GetProperty("reason").GetString()!;

        var (code, output, error) = Info(device: missing, json: true);
        Assert.That(code, Is.EqualTo(2), error);
        Assert.That(error.Trim(), Is.EqualTo($"or1: --device '{missing}': {reason}"));
        using var document = JsonDocument.Parse(output);
        Assert.That(document.RootElement.GetProperty("device").GetProperty("error").GetString(), Is.EqualTo(reason));
        Assert.That(document.RootElement.GetProperty("backends").GetArrayLength(), Is.EqualTo(Backends.Names.Count));
    }

    [Test]
    public void AnUnknownDeviceIsTheUsualArgumentError()
    {
        var e = Assert.Throws<CliException>(() => InfoCommand.Run("tpu", false, TextWriter.Null, TextWriter.Null));
        Assert.That(e!.Message, Is.EqualTo($"--device 'tpu' is not a backend this build has; available: {string.Join(", ", Backends.Names)}"));
    }

    /// <summary>The text without spaces: a word longer than its column is broken where no space was.</summary>
    private static string Squeeze(string text) => Regex.Replace(text, @"\s+", "");

    /// <summary>One table row: the starts cell, and the facts and check cells with their wrapped lines joined by spaces.</summary>
    private sealed record Row(string Starts, string Facts, string Check);

    /// <summary>
    /// The rows of the backend table by name. Spectre draws cell borders with '│' (or '|' where the output cannot take
    /// Unicode); a row starts at a line whose first cell is not empty and runs until the next one or the bottom border.
    /// Wrapped lines of a cell are joined with one space, which restores the text Spectre wrapped at a space.
    /// </summary>
    private static Dictionary<string, Row> TableRows(string text)
    {
        var rows = new Dictionary<string, Row>();
        string? name = null;
        List<string> starts = [], facts = [], check = [];
        void Flush()
        {
            if (name is not null && name != "backend")
                rows[name] = new Row(string.Join(' ', starts), string.Join(' ', facts), string.Join(' ', check));
        }

        foreach (string line in text.Split('\n').Select(l => l.TrimEnd('\r')))
        {
            if (!Regex.IsMatch(line, @"^\s*[│|]")) continue;
            string[] cells = line.Split('│', '|').Select(c => Regex.Replace(c, @"\s+", " ").Trim()).ToArray();
            if (cells.Length < 6) continue;
            if (cells[1].Length > 0)
            {
                Flush();
                name = cells[1];
                (starts, facts, check) = ([], [], []);
            }
            if (cells[2].Length > 0) starts.Add(cells[2]);
            if (cells[3].Length > 0) facts.Add(cells[3]);
            if (cells[4].Length > 0) check.Add(cells[4]);
        }
        Flush();
        return rows;
    }
}

using System.Text.Json;
using OR1.Tests.Support;

namespace OR1.Tests.Bench;

/// <summary>
/// The PyTorch side of the GPU check (bench/compare/gpu_roofline.py, gpu_kernels.py, gpu_model.py) runs only on a
/// lent GPU machine, rarely; here each script runs at its tiny shapes on the CPU with Debian's PyTorch (1.13: no SDPA,
/// no rms_norm, no fused AdamW, so the fallbacks run) and must write the JSON bench/README.md describes, with every
/// measurement it is known for timed, so a rename or a broken code path shows up in CI and not on the GPU day.
/// Ignored where /usr/bin/python3 cannot import torch, unless OR1_REQUIRE_TORCH=1 (CI installs python3-torch).
/// </summary>
public class TorchReferenceScriptTests
{
    private const string Python = "/usr/bin/python3";
    private const string Schema = "or1-torch-reference/1";

    private static readonly string[] s_projections = ["q", "k", "v", "o", "gate", "up", "down", "lm_head"];

    /// <summary>The measurement names each script writes, in every environment (skipped ones included).</summary>
    private static readonly Dictionary<string, string[]> s_expectedNames = new()
    {
        ["gpu_roofline.py"] = ["copy", "matmul_bf16"],
        ["gpu_kernels.py"] =
        [
            "attention_forward", "attention_backward", "attention_varlen_forward", "attention_varlen_backward",
            "attention_padded_forward", "attention_padded_backward", "attention_decode",
            "logprob_gemm", "logprob_forward", "logprob_backward",
            .. s_projections.SelectMany(p => new[] { $"gemm_{p}_forward", $"gemm_{p}_backward_input", $"gemm_{p}_backward_weight" }),
            "matmul_fp32", "copy", "rmsnorm_forward", "rmsnorm_backward", "rope_forward", "rope_backward",
            "swiglu_forward", "swiglu_backward", "adamw_step", "sample_temperature_1", "sample_top_p_0.95",
        ],
        ["gpu_model.py"] = ["magic_loss", "train_step", "generation"],
    };

    /// <summary>
    /// Measurements a machine may lack the means for, and the words their skip reason must contain: PyTorch's public
    /// varlen attention (torch 2.10+, CUDA) and the model with transformers (not on CI's machine).
    /// </summary>
    private static readonly Dictionary<string, string> s_mayBeSkipped = new()
    {
        ["attention_varlen_forward"] = "varlen",
        ["attention_varlen_backward"] = "varlen",
        ["train_step"] = "transformers",
        ["generation"] = "transformers",
    };

    private static readonly Lazy<string?> s_torchMissing = new(WhyTorchIsMissing);

    private string _work = "";

    [SetUp]
    public void CreateWorkFolder()
    {
        _work = Path.Combine(Path.GetTempPath(), "or1-torchref-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_work);
    }

    [TearDown]
    public void RemoveWorkFolder()
    {
        if (Directory.Exists(_work)) Directory.Delete(_work, recursive: true);
    }

    [TestCase("gpu_roofline.py")]
    [TestCase("gpu_kernels.py")]
    [TestCase("gpu_model.py")]
    public async Task ScriptWritesEveryMeasurementAtTinyShapesOnTheCpu(string script)
    {
        RequireTorch();
        string outFile = Path.Combine(_work, "out.json");
        var (exitCode, output, error) = await RunScriptAsync(script, "--device", "cpu", "--tiny", "--out", outFile);
        Assert.That(exitCode, Is.Zero, $"{script} exited {exitCode}\n{output}\n{error}");

        using var document = JsonDocument.Parse(File.ReadAllText(outFile));
        var root = document.RootElement;
        Assert.That(root.GetProperty("schema").GetString(), Is.EqualTo(Schema));
        Assert.That(root.GetProperty("script").GetString(), Is.EqualTo(script));
        Assert.That(root.GetProperty("tiny").GetBoolean(), Is.True);
        Assert.That(root.GetProperty("timed_out").GetBoolean(), Is.False);
        Assert.That(root.GetProperty("device").GetProperty("type").GetString(), Is.EqualTo("cpu"));
        Assert.That(root.GetProperty("software").GetProperty("torch").GetString(), Is.Not.Empty);

        var records = root.GetProperty("measurements").EnumerateArray().ToList();
        var names = records.Select(r => r.GetProperty("name").GetString()!).ToList();
        Assert.That(names.Distinct(), Is.EquivalentTo(s_expectedNames[script]), $"{script}'s measurement names");
        foreach (var record in records) CheckRecord(script, record);
    }

    /// <summary>
    /// gpu_kernels.py keys its records by the scheme of bench/compare/gpu_cases.json ("op/dims"), so gpu_report.py can
    /// pair them with ours: at tiny shapes the dims differ, but every case's kind of work is keyed (the 1 GiB copy is
    /// gpu_roofline.py's), no other kind is, and each record of the two sides is PyTorch's.
    /// </summary>
    [Test]
    public async Task KernelRecordsCarryTheCaseKeysOfTheCasesFile()
    {
        RequireTorch();
        string outFile = Path.Combine(_work, "out.json");
        string cases = Path.Combine(RepositoryPaths.Root, "bench", "compare", "gpu_cases.json");
        var (exitCode, output, error) = await RunScriptAsync("gpu_kernels.py", "--device", "cpu", "--tiny", "--out", outFile, "--cases", cases);
        Assert.That(exitCode, Is.Zero, $"{output}\n{error}");
        using var document = JsonDocument.Parse(File.ReadAllText(outFile));
        using var caseFile = JsonDocument.Parse(File.ReadAllText(cases));
        static string Kind(string key) => key.Contains('/') && key.Split('/') is var parts && parts[0] == "gemm" ? parts[0] + "/" + parts[1] : key.Split('/')[0];
        var caseKinds = caseFile.RootElement.GetProperty("cases").EnumerateArray().Select(c => Kind(c.GetProperty("key").GetString()!))
            .Where(k => k != "copy").ToHashSet();
        var records = document.RootElement.GetProperty("measurements").EnumerateArray().ToList();
        var keyedKinds = records.Where(r => r.TryGetProperty("key", out _)).Select(r => Kind(r.GetProperty("key").GetString()!)).ToHashSet();
        Assert.That(keyedKinds, Is.EquivalentTo(caseKinds));
        Assert.That(records.Select(r => r.GetProperty("side").GetString()), Is.All.EqualTo("torch"));
        Assert.That(document.RootElement.GetProperty("cases_missing").GetArrayLength(), Is.GreaterThan(0), "tiny shapes are not the cases'");
    }

    [Test]
    public async Task ATimeLimitStopsTheRunWithValidJsonAndExitCodeZero()
    {
        RequireTorch();
        string outFile = Path.Combine(_work, "out.json");
        var (exitCode, output, error) = await RunScriptAsync("gpu_kernels.py", "--device", "cpu", "--tiny", "--out", outFile, "--time-limit", "0");
        Assert.That(exitCode, Is.Zero, $"{output}\n{error}");
        using var document = JsonDocument.Parse(File.ReadAllText(outFile));
        Assert.That(document.RootElement.GetProperty("timed_out").GetBoolean(), Is.True);
        Assert.That(document.RootElement.GetProperty("measurements").GetArrayLength(), Is.Zero);
    }

    /// <summary>
    /// A timed record has a positive median within its positive range, the repeats it took, the timer, the
    /// implementation that ran, and a positive rate with the counting it came from; a skipped one says why.
    /// </summary>
    private static void CheckRecord(string script, JsonElement record)
    {
        string name = record.GetProperty("name").GetString()!;
        string where = $"{script} {name} ({record})";
        Assert.That(record.TryGetProperty("error", out var error), Is.False, $"{where}: {error}");
        Assert.That(record.GetProperty("shape").GetString(), Is.Not.Empty, where);
        if (record.TryGetProperty("skipped", out var skipped))
        {
            Assert.That(s_mayBeSkipped.TryGetValue(name, out var words), Is.True, $"{where} was skipped: {skipped}");
            Assert.That(skipped.GetString(), Does.Contain(words), where);
            return;
        }
        double ms = record.GetProperty("ms").GetDouble();
        Assert.That(ms, Is.GreaterThan(0), where);
        Assert.That(record.GetProperty("ms_min").GetDouble(), Is.GreaterThan(0).And.LessThanOrEqualTo(ms), where);
        Assert.That(record.GetProperty("ms_max").GetDouble(), Is.GreaterThanOrEqualTo(ms), where);
        Assert.That(record.GetProperty("repeats").GetInt32(), Is.GreaterThanOrEqualTo(1), where);
        Assert.That(record.GetProperty("timer").GetString(), Is.EqualTo("perf_counter"), where);
        Assert.That(record.GetProperty("implementation").GetString(), Is.Not.Empty, where);
        Assert.That(record.GetProperty("dtype").GetString(), Is.AnyOf("float32", "bfloat16"), where);
        bool rated = false;
        foreach (var (rate, counting) in new[] { ("tflops", "flops_counting"), ("gbps", "bytes_counting"), ("tokens_per_s", "tokens") })
        {
            if (!record.TryGetProperty(rate, out var value)) continue;
            rated = true;
            Assert.That(value.GetDouble(), Is.GreaterThan(0), $"{where}: {rate}");
            Assert.That(record.TryGetProperty(counting, out _), Is.True, $"{where}: {rate} without {counting}");
        }
        Assert.That(rated, Is.True, $"{where} has no TFLOP/s, GB/s or tokens/s");
        if (record.TryGetProperty("check_failed", out var failed))
            Assert.That(failed.GetBoolean(), Is.False, $"{where}: {record.GetProperty("check").GetString()}");
    }

    private static void RequireTorch()
    {
        if (s_torchMissing.Value is not { } why) return;
        if (Environment.GetEnvironmentVariable("OR1_REQUIRE_TORCH") == "1") Assert.Fail(why);
        Assert.Ignore(why);
    }

    private static string? WhyTorchIsMissing()
    {
        if (!File.Exists(Python)) return $"{Python} is not on this machine; the PyTorch reference scripts need it with python3-torch";
        try
        {
            var (exitCode, _, error) = RunAsync(Python, ["-c", "import torch"], TimeSpan.FromMinutes(1)).GetAwaiter().GetResult();
            return exitCode == 0 ? null : $"{Python} cannot import torch (apt-get install python3-torch): {error.Trim()}";
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or TimeoutException)
        {
            return $"{Python} -c 'import torch' did not run: {e.Message}";
        }
    }

    private async Task<(int ExitCode, string Output, string Error)> RunScriptAsync(string script, params string[] arguments)
    {
        string path = Path.Combine(RepositoryPaths.Root, "bench", "compare", script);
        Assert.That(File.Exists(path), Is.True, path);
        return await RunAsync(Python, [path, .. arguments], TimeSpan.FromMinutes(3), _work);
    }

    // no __pycache__ beside the scripts in the checkout
    private static Task<(int ExitCode, string Output, string Error)> RunAsync(string program, IEnumerable<string> arguments, TimeSpan timeout,
        string? workingDirectory = null) =>
        ChildProcess.RunAsync(program, arguments, timeout, workingDirectory, new Dictionary<string, string> { ["PYTHONDONTWRITEBYTECODE"] = "1" });
}

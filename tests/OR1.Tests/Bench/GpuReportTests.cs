using System.Text.Json;
using OR1.Tests.Support;

namespace OR1.Tests.Bench;

/// <summary>
/// bench/compare/gpu_report.py, the GPU check's report writer, on synthetic phase outputs: pairs our and PyTorch's
/// records by key, computes the ratios and the percentages of the measured roofline, reads NUnit's results and the
/// sanitizers' summaries (an unsupported device is said so, never counted clean), lists the problems that fail the
/// check, and writes the markdown tables.
/// </summary>
public sealed class GpuReportTests
{
    private static string Script => Path.Combine(RepositoryPaths.Root, "bench", "compare", "gpu_report.py");

    private static (int Exit, string Output) Run(string work, string output)
    {
        if (!File.Exists("/usr/bin/python3")) Assert.Ignore("no /usr/bin/python3 (CI installs it)");
        var (exit, stdout, stderr) = ChildProcess.RunAsync("/usr/bin/python3", [Script, "--work", work, "--out", output], TimeSpan.FromMinutes(1))
            .GetAwaiter().GetResult();
        return (exit, stdout + stderr);
    }

    private static string Folder()
    {
        var path = Path.Combine(Path.GetTempPath(), $"or1-gpu-report-{Guid.NewGuid():N}");
        Directory.CreateDirectory(path);
        return path;
    }

    private static void Write(string folder, string name, string text) => File.WriteAllText(Path.Combine(folder, name), text);

    [Test]
    public void PairsSidesComputesRatiosAndListsProblems()
    {
        string work = Folder(), output = Folder();
        try
        {
            Write(work, "phases.jsonl", """
                {"phase": "tests", "rc": 0, "seconds": 40, "limit": 120, "timed_out": false}
                {"phase": "model-torch", "rc": 124, "seconds": 55, "limit": 55, "timed_out": true}
                """);
            Write(work, "gpu-tests.xml", """<test-suite type="Assembly" passed="10" failed="1" skipped="2" inconclusive="0" total="13"><test-case fullname="OR1.Tests.X.Broken" result="Failed"/></test-suite>""");
            Write(work, "sanitizer-memcheck.log", "========= COMPUTE-SANITIZER\n========= Invalid __global__ read of size 16 bytes\n=========     at rmsnorm_forward_bf16(const bf16*)+0x80\n========= ERROR SUMMARY: 3 errors\n");
            Write(work, "sanitizer-racecheck.log", "========= COMPUTE-SANITIZER\n========= Error: Device not supported\n");
            Write(work, "roofline.json", """[{"key": "roofline/copy_1GiB", "side": "torch", "gbps": 3000.0, "device": "NVIDIA H100 80GB HBM3"}, {"key": "roofline/matmul_bf16_8192", "side": "torch", "tflops": 700.0}]""");
            Write(work, "ours-kernels.json", """
                [{"key": "attention_forward/1x16384", "side": "ours", "name": "attention_forward", "ms": 4.0, "tflops": 210.0, "counters": {"gemms": 0, "builtin_gemms": 0}},
                {"key": "rmsnorm_forward/16384x1536", "side": "ours", "ms": 0.05, "gbps": 2400.0},
                {"key": "gemm/q_o/16384x1536x1536", "side": "ours", "ms": 1.0, "tflops": 600.0, "counters": {"gemms": 16, "builtin_gemms": 1}},
                {"key": "sample_top_p/64x151936", "side": "ours", "error": "boom"}]
                """);
            Write(work, "torch-kernels.json", """
                {"records": [{"key": "attention_forward/1x16384", "side": "torch", "ms": 2.4, "tflops": 350.0},
                {"key": "rmsnorm_forward/16384x1536", "side": "torch", "ms": 0.06, "gbps": 2000.0},
                {"key": "decode/only-torch", "side": "torch", "ms": 1.0, "gbps": 1000.0}]}
                """);
            Write(work, "ours-model.json", """[{"key": "model/train_step/bf16", "side": "ours", "ms": 9000, "tokens_per_s": 1820.4, "peak_bytes": 60000000000, "counters": {"launches": 5000, "gemms": 400, "builtin_gemms": 0, "synchronizations": 3}}]""");

            var (exit, text) = Run(work, output);
            Assert.That(exit, Is.EqualTo(1), $"problems fail the check: {text}");
            using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "gpu-check.json")));
            var root = report.RootElement;
            Assert.That(root.GetProperty("device").GetString(), Is.EqualTo("NVIDIA H100 80GB HBM3"));
            var kernels = root.GetProperty("kernels").EnumerateArray().ToDictionary(k => k.GetProperty("key").GetString()!);
            Assert.That(kernels["attention_forward/1x16384"].GetProperty("ratio_to_torch").GetDouble(), Is.EqualTo(0.6).Within(1e-9));
            Assert.That(kernels["attention_forward/1x16384"].GetProperty("ours_percent_of_roofline").GetDouble(), Is.EqualTo(30).Within(1e-9));
            Assert.That(kernels["rmsnorm_forward/16384x1536"].GetProperty("ours_percent_of_roofline").GetDouble(), Is.EqualTo(80).Within(1e-9));
            Assert.That(kernels["decode/only-torch"].GetProperty("missing").GetString(), Is.EqualTo("ours"));
            Assert.That(kernels["gemm/q_o/16384x1536x1536"].GetProperty("missing").GetString(), Is.EqualTo("torch"));
            var sanitizers = root.GetProperty("sanitizer").EnumerateArray().ToArray();
            Assert.That(sanitizers[0].GetProperty("status").GetString(), Is.EqualTo("errors"));
            Assert.That(sanitizers[0].GetProperty("errors").GetInt32(), Is.EqualTo(3));
            Assert.That(sanitizers[0].GetProperty("kernels").EnumerateArray().Select(k => k.GetString()), Does.Contain("rmsnorm_forward_bf16"));
            Assert.That(sanitizers[1].GetProperty("status").GetString(), Is.EqualTo("unsupported"), "an unsupported device is never clean");
            Assert.That(root.GetProperty("tests").GetProperty("failed_tests")[0].GetString(), Is.EqualTo("OR1.Tests.X.Broken"));
            Assert.That(root.GetProperty("proof_of_path").GetProperty("builtin_gemms").GetInt32(), Is.EqualTo(1));
            var problems = root.GetProperty("problems").EnumerateArray().Select(p => p.GetString()!).ToArray();
            Assert.That(problems, Has.Some.Contains("ran out of time"));
            Assert.That(problems, Has.Some.Contains("Gpu tests: failed"));
            Assert.That(problems, Has.Some.Contains("memcheck: 3 errors"));
            Assert.That(problems, Has.Some.Contains("sample_top_p/64x151936: boom"));
            Assert.That(problems, Has.Some.Contains("builtin kernel"));
            string md = File.ReadAllText(Path.Combine(output, "gpu-check.md"));
            Assert.That(md, Does.Contain("| attention_forward/1x16384 |").And.Contain("0.60").And.Contain("timed out").And.Contain("peak 55.9 GiB"));
            Assert.That(Directory.GetFiles(output), Has.Length.LessThanOrEqualTo(8));
        }
        finally
        {
            Directory.Delete(work, true);
            Directory.Delete(output, true);
        }
    }

    [Test]
    public void NothingRunIsNotAPass()
    {
        string work = Folder(), output = Folder();
        try
        {
            var (exit, text) = Run(work, output);
            Assert.That(exit, Is.EqualTo(1), text);
            using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "gpu-check.json")));
            Assert.That(report.RootElement.GetProperty("tests").GetProperty("status").GetString(), Is.EqualTo("not run"));
            Assert.That(report.RootElement.GetProperty("sanitizer")[0].GetProperty("status").GetString(), Is.EqualTo("not run"));
            var (badExit, badText) = Run(Path.Combine(work, "missing"), output);
            Assert.That(badExit, Is.EqualTo(2));
            Assert.That(badText, Does.Contain("--work").And.Contain("is not a folder"));
        }
        finally
        {
            Directory.Delete(work, true);
            Directory.Delete(output, true);
        }
    }
}

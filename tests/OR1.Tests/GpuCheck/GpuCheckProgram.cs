using System.Diagnostics;
using System.Xml;
using NUnit.Framework.Api;
using NUnit.Framework.Interfaces;
using NUnit.Framework.Internal;
using OR1.Native.Cuda;
using OR1.Runner.Commands;

namespace OR1.Tests.GpuCheck;

/// <summary>
/// The entry point of OR1.Tests.dll when it is run directly rather than by `dotnet test`: on a GPU
/// machine that has only a .NET runtime (no SDK, no network), `dotnet OR1.Tests.dll --gpu-check` runs the
/// tests of category "Gpu" in-process with NUnit's own runner, then the short kernel benchmark
/// (<see cref="KernelBenchmark"/>), after the backend table of <c>or1 info</c> (saved as info.json).
/// bench/gpu-check.sh drives it. Exit code 0 = the device opened, every backend that starts passed the
/// table's op check, every Gpu test passed, and the benchmark ran.
/// </summary>
public static class GpuCheckProgram
{
    public static int Main(string[] args)
    {
        if (!args.Contains("--gpu-check"))
        {
            Console.Error.WriteLine("OR1.Tests runs under `dotnet test`. Run directly:\n" +
                                    "  dotnet OR1.Tests.dll --gpu-check [--info-only | --tests-only | --bench-only | --model-only] [--out DIR] [--cases FILE] [--where \"cat == Gpu\" | \"class == NAME\" | \"test =~ REGEX\"] [--quick] [--skip-probe]\n" +
                                    "runs the Gpu test category, the kernel benchmark and the whole-model check on a CUDA device (see bench/README.md).");
            return 2;
        }
        string outDir = Option(args, "--out") ?? Path.Combine(Directory.GetCurrentDirectory(), "gpu-check-results");
        Directory.CreateDirectory(outDir);
        // --info-only (the check's first phase): what `or1 info` prints, which backends start on this machine, the
        // device's facts and each one's op check; info.json beside. Only there: every backend starts for it.
        if (args.Contains("--info-only"))
        {
            var info = InfoReport.Collect();
            InfoText.Write(info, Console.Out);
            File.WriteAllText(Path.Combine(outDir, "info.json"), InfoJson.Serialize(info));
            if (InfoText.Failures(info) is { Count: > 0 } failures)
            {
                Console.Error.WriteLine($"gpu-check: the op check of the backend table failed on {string.Join("; ", failures)}");
                return 8;
            }
            return 0;
        }
        // --skip-probe: run the selected tests even without a device (to try the runner itself).
        if (!CudaBackend.TryProbe(out string device) && !args.Contains("--skip-probe"))
        {
            Console.Error.WriteLine($"gpu-check: {device}");
            return 3;
        }
        Console.WriteLine($"gpu-check: {device}");
        int rc = 0;
        bool only = args.Contains("--tests-only") || args.Contains("--bench-only") || args.Contains("--model-only");
        if (!only || args.Contains("--tests-only")) rc |= RunTests(Option(args, "--where") ?? "cat == Gpu", outDir);
        if (!only || args.Contains("--model-only"))
        {
            try
            {
                using var gpu = new CudaBackend();
                var records = ModelCheck.Run(gpu, args.Contains("--quick") ? ModelCheck.Quick : ModelCheck.Full, OR1.Model.Precision.Bf16, Console.WriteLine);
                GpuCheckRecord.Save(Path.Combine(outDir, "ours-model.json"), records);
                var path = records.SelectMany(r => r.Counters ?? []).Where(c => c.Key == "builtin_gemms").Sum(c => c.Value);
                if (path > 0)
                {
                    Console.Error.WriteLine($"gpu-check: {path} GEMMs of the model check ran on the builtin kernel, not cuBLAS (see ours-model.json)");
                    rc |= 16;
                }
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"gpu-check: the model check failed: {e}");
                rc |= 16;
            }
        }
        if (!only || args.Contains("--bench-only"))
        {
            try
            {
                var cases = KernelCaseSpec.Load(Option(args, "--cases") ?? Path.Combine(OR1.Tests.Support.RepositoryPaths.Root, "bench", "compare", "gpu_cases.json"));
                using var gpu = new CudaBackend();
                Console.WriteLine($"gpu-check: {cases.Count} kernel cases (median of {(args.Contains("--quick") ? 5 : 15)} calls each)");
                var records = KernelBenchmark.Run(gpu, cases, call => gpu.TimeMilliseconds(call), args.Contains("--quick") ? 5 : 15, Console.WriteLine);
                GpuCheckRecord.Save(Path.Combine(outDir, "ours-kernels.json"), records);
                if (records.Any(r => r.Error is not null)) rc |= 4;
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"gpu-check: the benchmark failed: {e}");
                rc |= 4;
            }
        }
        return rc;
    }

    private static string? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static int RunTests(string where, string outDir)
    {
        var watch = Stopwatch.StartNew();
        var runner = new NUnitTestAssemblyRunner(new DefaultTestAssemblyBuilder());
        runner.Load(typeof(GpuCheckProgram).Assembly, new Dictionary<string, object>());
        var filter = TestFilter.FromXml(WhereToXml(where));
        var listener = new Listener();
        ITestResult result = runner.Run(listener, filter);
        var xml = new XmlDocument();
        xml.LoadXml(result.ToXml(true).OuterXml);
        xml.Save(Path.Combine(outDir, "gpu-tests.xml"));
        int passed = result.PassCount, failed = result.FailCount, skipped = result.SkipCount + result.InconclusiveCount;
        Console.WriteLine($"gpu-check tests ({where}): {watch.Elapsed.TotalSeconds:F0} s, results in {Path.Combine(outDir, "gpu-tests.xml")}");
        Console.WriteLine($"{passed} passed, {failed} failed, {skipped} skipped");
        if (passed == 0) Console.Error.WriteLine("gpu-check: no Gpu test passed (were they all ignored? see the messages above)");
        return failed > 0 || passed == 0 ? 1 : 0;
    }

    /// <summary>
    /// "cat == Gpu", "class == OR1.Tests.Ops.RopeTests" or "test =~ REGEX" (a regular expression over the full names,
    /// e.g. <c>\(Emu\)</c> for every Emu fixture), joined by "||", to NUnit's filter XML.
    /// </summary>
    internal static string WhereToXml(string where)
    {
        var terms = new List<string>();
        foreach (string part in where.Split("||", StringSplitOptions.TrimEntries))
        {
            string[] equal = part.Split("==", 2, StringSplitOptions.TrimEntries);
            string[] match = part.Split("=~", 2, StringSplitOptions.TrimEntries);
            string? term = (equal, match) switch
            {
                ({ Length: 2 }, _) when equal[0] is "cat" or "class" && equal[1].Length > 0 =>
                    $"<{equal[0]}>{System.Security.SecurityElement.Escape(equal[1])}</{equal[0]}>",
                (_, { Length: 2 }) when match[0] == "test" && match[1].Length > 0 =>
                    $"<test re=\"1\">{System.Security.SecurityElement.Escape(match[1])}</test>",
                _ => null,
            };
            terms.Add(term ?? throw new ArgumentException(
                $"unsupported filter term '{part}' in --where '{where}': use cat == NAME, class == FULL.NAME or test =~ REGEX, joined by ||"));
        }
        return terms.Count == 1 ? $"<filter>{terms[0]}</filter>" : $"<filter><or>{string.Concat(terms)}</or></filter>";
    }

    private sealed class Listener : ITestListener
    {
        public void TestStarted(ITest test) { }

        public void TestFinished(ITestResult result)
        {
            if (result.Test.IsSuite) return;
            var state = result.ResultState.Status;
            string mark = state switch
            {
                TestStatus.Passed => "  ok  ",
                TestStatus.Failed => "FAILED",
                _ => " skip ",
            };
            Console.WriteLine($"{mark} {result.FullName} ({result.Duration:F2} s)");
            if (state == TestStatus.Failed) Console.WriteLine("       " + result.Message?.Replace("\n", "\n       "));
            if (state is TestStatus.Skipped or TestStatus.Inconclusive && !string.IsNullOrEmpty(result.Message))
                Console.WriteLine("       " + result.Message.Split('\n')[0]);
        }

        public void TestOutput(TestOutput output) { }

        public void SendMessage(TestMessage message) { }
    }
}

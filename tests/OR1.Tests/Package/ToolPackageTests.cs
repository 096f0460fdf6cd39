using OR1.Tests.Support;

namespace OR1.Tests.Package;

/// <summary>
/// `or1` as a .NET tool, as a user installs it: `dotnet pack samples/OR1.Runner` into a folder feed, then
/// `dotnet tool install --tool-path` from it, then `or1 --help` and `or1 info` from the installed tool. The emulator
/// library and the kernel files must travel inside the tool package and be found at run time.
/// </summary>
[Category("Package")]
public sealed class ToolPackageTests
{
    [Test]
    public void Or1InstallsAsADotnetToolAndRuns()
    {
        string root = RepositoryPaths.Root;
        string work = Path.Combine(Path.GetTempPath(), "or1-tool-" + Guid.NewGuid().ToString("N"));
        string feed = Path.Combine(work, "feed"), tools = Path.Combine(work, "tools");
        string version = "0.0.0-test." + DateTime.UtcNow.ToString("yyyyMMddHHmmss", System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            var pack = ChildProcess.Run("dotnet", root, "pack", "samples/OR1.Runner/OR1.Runner.csproj", "-c", "Release", "-o", feed, $"-p:Version={version}");
            Assert.That(pack.ExitCode, Is.Zero, pack.Output);
            string nupkg = Path.Combine(feed, $"OR1.Runner.{version}.nupkg");
            Assert.That(File.Exists(nupkg), $"expected {nupkg}; pack said:\n{pack.Output}");
            using (var zip = System.IO.Compression.ZipFile.OpenRead(nupkg))
            {
                var names = zip.Entries.Select(e => e.FullName).ToArray();
                Assert.That(names, Has.Some.EqualTo("tools/net10.0/any/or1.dll"));
                Assert.That(names, Has.Some.EqualTo("tools/net10.0/any/DotnetToolSettings.xml"), "packed as a .NET tool");
                Assert.That(names, Has.Some.EqualTo("tools/net10.0/any/libor1_emu.so"), "the emulation library");
                Assert.That(names, Has.Some.Matches<string>(n => n.StartsWith("tools/net10.0/any/kernels/src/", StringComparison.Ordinal) && n.EndsWith(".cu", StringComparison.Ordinal)), "the CUDA sources");
            }

            var install = ChildProcess.Run("dotnet", work, "tool", "install", "--tool-path", tools, "--add-source", feed, "--version", version, "OR1.Runner");
            Assert.That(install.ExitCode, Is.Zero, install.Output);
            string or1 = Path.Combine(tools, OperatingSystem.IsWindows() ? "or1.exe" : "or1");
            Assert.That(File.Exists(or1), $"the tool command {or1} was not created:\n{install.Output}");

            var help = ChildProcess.Run(or1, work, "--help");
            Assert.That(help.ExitCode, Is.Zero, help.Output);
            Assert.That(help.Output, Does.Contain("sample").And.Contain("train").And.Contain("info"));

            var info = ChildProcess.Run(or1, work, "info", "--device", "cpu");
            Assert.That(info.ExitCode, Is.Zero, info.Output);
            Assert.That(info.Output, Does.Contain("GRPO advantages of rewards [1, 0, 1, 1]: [0.5000, -1.5000, 0.5000, 0.5000]"));
            Assert.That(info.Output, Does.Match(@"emu\W+yes\W"), "the emulator inside the tool package is found and starts");
            Assert.That(info.Output, Does.Match(@"CUDA sources for NVRTC: [1-9]\d* files"));
            Assert.That(info.Output, Does.Contain(Path.Combine(tools, ".store")), "the kernel files are those of the installed tool");
            if (Directory.Exists(Path.Combine(root, "build", "kernels", "out", "ptx")))
                Assert.That(info.Output, Does.Match(@"prebuilt PTX: sm_80 \(\d+ files\), sm_90 \(\d+ files\)"), "nvcc built PTX here, so the tool carries it");

            // The table's op check as JSON: the emulator of the installed tool computes what the Cpu backend does.
            var json = ChildProcess.Run(or1, work, "info", "--json");
            Assert.That(json.ExitCode, Is.Zero, json.Output);
            using var report = System.Text.Json.JsonDocument.Parse(json.Output);
            var emu = report.RootElement.GetProperty("backends").EnumerateArray().Single(b => b.GetProperty("name").GetString() == "emu");
            Assert.That(emu.GetProperty("check").GetProperty("passed").GetBoolean(), Is.True, json.Output);
        }
        finally
        {
            if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
            string cached = Path.Combine(ChildProcess.NuGetPackagesFolder, "or1.runner", version);
            if (Directory.Exists(cached)) Directory.Delete(cached, recursive: true);
        }
    }
}

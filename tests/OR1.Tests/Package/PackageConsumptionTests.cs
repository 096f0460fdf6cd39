using System.Diagnostics;
using OR1.Tests.Support;

namespace OR1.Tests.Package;

/// <summary>
/// The NuGet package as a user gets it: `dotnet pack` of src/OR1.Native into a folder feed made by the
/// test, then tests/PackageConsumer restored from that feed, built and run (it calls RMSNorm and attention
/// on the Cpu backend and checks the results). Also checks what the package contains.
/// </summary>
[Category("Package")]
public sealed class PackageConsumptionTests
{
    private static (int ExitCode, string Output) Dotnet(string workingDirectory, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        // The consumer must not inherit this test run's MSBuild state.
        info.Environment.Remove("MSBuildExtensionsPath");
        info.Environment.Remove("MSBUILD_EXE_PATH");
        info.Environment.Remove("MSBuildSDKsPath");
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"dotnet {string.Join(' ', args)} did not finish in 5 minutes");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    [Test]
    public void PackageIsConsumableFromALocalFeed()
    {
        string root = RepositoryPaths.Root;
        string work = Path.Combine(Path.GetTempPath(), "or1-pack-" + Guid.NewGuid().ToString("N"));
        string feed = Path.Combine(work, "feed");
        // A unique version, so no cached copy of an older package can stand in for this one.
        string version = "0.0.0-test." + DateTime.UtcNow.ToString("yyyyMMddHHmmss", System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            var pack = Dotnet(root, "pack", "src/OR1.Native/OR1.Native.csproj", "-c", "Release", "-o", feed, $"-p:Version={version}", "-p:Or1SkipKernels=false");
            Assert.That(pack.ExitCode, Is.Zero, pack.Output);
            string nupkg = Path.Combine(feed, $"OR1.Native.{version}.nupkg");
            Assert.That(File.Exists(nupkg), $"expected {nupkg}; pack said:\n{pack.Output}");
            using (var zip = System.IO.Compression.ZipFile.OpenRead(nupkg))
            {
                var names = zip.Entries.Select(e => e.FullName).ToArray();
                Assert.That(names, Has.Some.EqualTo("lib/net10.0/OR1.Native.dll"));
                Assert.That(names, Has.Some.EqualTo("lib/net10.0/OR1.Native.xml"), "XML docs");
                Assert.That(names, Has.Some.EqualTo("README.md"), "package readme");
                Assert.That(names, Has.Some.Contains("kernels/src/").And.Some.EndsWith(".cu"), "the CUDA sources");
                Assert.That(names, Has.Some.EqualTo("runtimes/linux-x64/native/libor1_emu.so"), "the emulation library");
            }

            string consumer = Path.Combine(work, "consumer");
            CopyDirectory(Path.Combine(root, "tests", "PackageConsumer"), consumer);
            // The folder feed is added to the machine's configured sources (no <clear/>), which provide the dependencies.
            File.WriteAllText(Path.Combine(consumer, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources><add key="or1-local" value="{feed}" /></packageSources>
                </configuration>
                """);
            var run = Dotnet(consumer, "run", "-c", "Release", $"-p:Or1PackageVersion={version}");
            Assert.That(run.ExitCode, Is.Zero, run.Output);
            Assert.That(run.Output, Does.Contain("OK (Cpu"));
        }
        finally
        {
            if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
            // The unique test version must not accumulate in the user's package cache.
            string cached = Path.Combine(Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages"), "or1.native", version);
            if (Directory.Exists(cached)) Directory.Delete(cached, recursive: true);
        }
    }

    private static void CopyDirectory(string source, string destination)
    {
        Directory.CreateDirectory(destination);
        foreach (var file in Directory.GetFiles(source))
            File.Copy(file, Path.Combine(destination, Path.GetFileName(file)));
        foreach (var dir in Directory.GetDirectories(source))
        {
            string name = Path.GetFileName(dir);
            if (name is "bin" or "obj") continue;
            CopyDirectory(dir, Path.Combine(destination, name));
        }
    }
}

using OR1.Tests.Support;

namespace OR1.Tests.Package;

/// <summary>
/// The NuGet package as a user gets it: `dotnet pack` of src/OR1.Native into a folder feed made by the
/// test, then tests/PackageConsumer restored from that feed, built and run on the Cpu and Emu backends (its
/// Program.cs is README.md's kernel-package snippet, verbatim: a test holds them equal). Also checks what the
/// package contains.
/// </summary>
[Category("Package")]
public sealed class PackageConsumptionTests
{
    private static (int ExitCode, string Output) Dotnet(string workingDirectory, params string[] args) =>
        ChildProcess.Run("dotnet", workingDirectory, args);

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
            // The emulation library inside the package is found at run time in a consumer's build output.
            var emu = Dotnet(consumer, "run", "-c", "Release", "--no-build", $"-p:Or1PackageVersion={version}", "--", "emu");
            Assert.That(emu.ExitCode, Is.Zero, emu.Output);
            Assert.That(emu.Output, Does.Contain("OK (Emu"));
        }
        finally
        {
            if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
            // The unique test version must not accumulate in the user's package cache.
            string cached = Path.Combine(ChildProcess.NuGetPackagesFolder, "or1.native", version);
            if (Directory.Exists(cached)) Directory.Delete(cached, recursive: true);
        }
    }

    [Test]
    public void ReadmeSnippet_IsTheConsumerProgram()
    {
        string readme = File.ReadAllText(Path.Combine(RepositoryPaths.Root, "README.md"));
        const string begin = "<!-- package-snippet:begin -->", end = "<!-- package-snippet:end -->";
        int start = readme.IndexOf(begin, StringComparison.Ordinal), stop = readme.IndexOf(end, StringComparison.Ordinal);
        Assert.That(start, Is.GreaterThanOrEqualTo(0), $"README.md has no {begin} marker");
        Assert.That(stop, Is.GreaterThan(start), $"README.md has no {end} after {begin}");
        string block = readme[(start + begin.Length)..stop].Trim().ReplaceLineEndings("\n");
        Assert.That(block, Does.StartWith("```csharp\n").And.EndWith("\n```"), "the snippet is one csharp code block");
        string snippet = block["```csharp\n".Length..^"\n```".Length];
        string program = File.ReadAllText(Path.Combine(RepositoryPaths.Root, "tests", "PackageConsumer", "Program.cs")).ReplaceLineEndings("\n").TrimEnd();
        Assert.That(snippet, Is.EqualTo(program),
            "README.md's kernel-package snippet must be tests/PackageConsumer/Program.cs verbatim (the package test runs that file): update both");
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

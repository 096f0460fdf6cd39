using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using OR1.Grpo.Data;
using OR1.Grpo.Rewards.Code;
using OR1.Tests.Support;
using static OR1.Tests.Rewards.Code.SandboxRequirement;

namespace OR1.Tests.Rewards.Code;

/// <summary>
/// Hostile programs, each bounded so that even a broken sandbox could not hurt the machine: a 2 s wall
/// limit, 500 children that sleep 20 s (no unbounded fork bomb), a 4 GB allocation left untouched, 1 GB of
/// output, a loopback listener this test opens (never an outside address), a decoy folder in a temporary
/// HOME (never a real home), a parent kill that never targets the test process. Each scores 0 with the
/// right reason or passes harmlessly. The last test checks the machine afterwards: no stray process, no
/// connection to the listener, no file outside the scratch folders changed.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class SandboxHostileTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(2);

    /// <summary>Start, run, kill and clean-up time on a loaded machine, on top of the limit.</summary>
    private static readonly TimeSpan Slack = TimeSpan.FromSeconds(8);

    private readonly string _marker = "or1-hostile-" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>A sleep duration no other process has: it tags the children the hostile programs start.</summary>
    private readonly string _sleepTag = "20." + Random.Shared.NextInt64(100_000_000, 999_999_999).ToString(System.Globalization.CultureInfo.InvariantCulture);

    private CodeReward _reward = null!;
    private TcpListener? _listener;
    private Thread? _acceptor;
    private int _connections;
    private string _home = null!;
    private string _projectRoot = null!;
    private string _testFolder = null!;
    private Dictionary<string, (long Length, DateTime Written)> _before = null!;
    private HashSet<int> _sandboxUserProcessesBefore = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        RequireTools();
        _testFolder = TestContext.CurrentContext.TestDirectory;
        _projectRoot = RepositoryPaths.Root;

        _home = Path.Combine(Path.GetTempPath(), "or1-test-home-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(_home, "decoy", "nested"));
        File.WriteAllText(Path.Combine(_home, "decoy", "keep.txt"), "the sandbox must not delete this");
        File.WriteAllText(Path.Combine(_home, "decoy", "nested", "keep2.txt"), "nor this");
        Directory.CreateDirectory(Path.Combine(_home, ".ssh"));
        File.WriteAllText(Path.Combine(_home, ".ssh", "id_rsa"), "FAKE KEY " + _marker);

        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        _acceptor = new Thread(() =>
        {
            try
            {
                while (true)
                {
                    using var client = _listener.AcceptTcpClient();
                    Interlocked.Increment(ref _connections);
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or InvalidOperationException)
            {
                // Stopped.
            }
        }) { IsBackground = true, Name = "loopback listener" };
        _acceptor.Start();

        _before = Snapshot();
        _sandboxUserProcessesBefore = ProcessesOfUser(SandboxOptions.Default.UnprivilegedId);
        _reward = new CodeReward(new CodeRewardOptions
        {
            MaxConcurrentPrograms = 2,
            Sandbox = new SandboxOptions { TimeLimit = Limit, Environment = new Dictionary<string, string> { ["HOME"] = _home } },
        });
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        _listener?.Stop();
        _listener?.Dispose();
        if (_home is not null && Directory.Exists(_home)) Directory.Delete(_home, recursive: true);
    }

    private int Port => ((IPEndPoint)_listener!.LocalEndpoint).Port;

    private CodeVerdict Run(string code, string expected = "contained") => Run(code, new JsonObject
    {
        ["inputs"] = new JsonArray(""),
        ["outputs"] = new JsonArray(expected),
    });

    private CodeVerdict Run(string code, JsonObject tests)
    {
        var clock = Stopwatch.StartNew();
        var verdict = _reward.Evaluate(Answer(code), new CodeGroundTruth(tests));
        TestContext.Out.WriteLine($"{verdict.Outcome}: {verdict.Reason} ({clock.Elapsed.TotalSeconds:F2} s)");
        Assert.That(clock.Elapsed, Is.LessThan(Limit + Slack), "every hostile program is bounded in time");
        return verdict;
    }

    private static string Py(string s) => JsonSerializer.Serialize(s); // a JSON string is a valid Python string literal here

    [Test, Order(1)]
    public void InfiniteLoopHitsTheTimeLimit()
    {
        var verdict = Run("while True:\n    pass");
        Assert.That(verdict.Outcome, Is.EqualTo(CodeOutcome.TimeLimit));
        Assert.That(verdict.Reason, Does.Contain("time limit").And.Contain("2 s"));
    }

    [Test, Order(2)]
    public void ProcessFloodStopsAtTheProcessLimit()
    {
        var verdict = Run($$"""
            import subprocess
            children = []
            for i in range(500):
                children.append(subprocess.Popen(["sleep", "{{_sleepTag}}"]))
            print("started", len(children))
            """);
        Assert.That(verdict.Outcome, Is.EqualTo(CodeOutcome.RuntimeError));
        Assert.That(verdict.Reason, Does.Contain("Resource temporarily unavailable").Or.Contain("BlockingIOError"));
    }

    [Test, Order(3)]
    public void AllocatingFourGigabytesHitsTheMemoryLimit()
    {
        var verdict = Run("block = bytearray(4 * 1024 ** 3)\nprint(len(block))");
        Assert.That(verdict.Outcome, Is.EqualTo(CodeOutcome.MemoryLimit));
        Assert.That(verdict.Reason, Does.Contain("MemoryError").And.Contain("1024 MB"));
    }

    [Test, Order(4)]
    public void WritingAGigabyteToStdoutHitsTheOutputCap()
    {
        var verdict = Run("import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)");
        Assert.That(verdict.Outcome, Is.EqualTo(CodeOutcome.OutputLimit));
        Assert.That(verdict.Reason, Does.Contain("stdout"));
    }

    [Test, Order(5)]
    public void WritesToTmpStayInTheScratchAndTheProjectIsUnreachable()
    {
        var verdict = Run($$"""
            import os
            def attempt(path):
                try:
                    with open(path, "w") as f:
                        f.write("escaped")
                    return "written"
                except OSError:
                    return "blocked"
            print("tmp:", attempt("/tmp/{{_marker}}.txt"))
            print("project:", attempt({{Py(Path.Combine(_projectRoot, _marker + ".txt"))}}))
            print("tests:", attempt({{Py(Path.Combine(_testFolder, _marker + ".txt"))}}))
            """, "tmp: written\nproject: blocked\ntests: blocked");
        var escaped = EscapeFiles().Where(File.Exists).ToList();
        escaped.ForEach(File.Delete); // a broken sandbox leaves at most these marker files; remove them
        Assert.That(verdict.Outcome, Is.EqualTo(CodeOutcome.Passed), verdict.Reason);
        Assert.That(escaped, Is.Empty, "the /tmp write lands in the sandbox's own tmpfs; the project is not there");
    }

    [Test, Order(6)]
    public void SshKeysAndShadowAreNotReadable()
    {
        string realHome = System.Environment.GetEnvironmentVariable("HOME") ?? "/root";
        var verdict = Run($$"""
            import os
            def read(path):
                try:
                    with open(path, "rb") as f:
                        f.read(1)
                    return "READ " + path
                except OSError:
                    return None
            def listing(path):
                try:
                    return "LISTED %s (%d entries)" % (path, len(os.listdir(path)))
                except OSError:
                    return None
            leaks = [r for r in [
                read("/etc/shadow"), read("/etc/gshadow"),
                listing("/root/.ssh"), listing("/root"), listing("/home"),
                listing(os.path.expanduser("~/.ssh")), read(os.path.expanduser("~/.ssh/id_rsa")),
                listing({{Py(Path.Combine(realHome, ".ssh"))}}), listing({{Py(realHome)}}),
                read({{Py(Path.Combine(_home, ".ssh", "id_rsa"))}}),
            ] if r]
            print(" ; ".join(leaks) if leaks else "contained")
            """);
        Assert.That(verdict.Outcome, Is.EqualTo(CodeOutcome.Passed), verdict.Reason);
    }

    [Test, Order(7)]
    public void LoopbackListenerOfTheHostIsUnreachable()
    {
        var verdict = Run($$"""
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(1.0)
            try:
                s.connect(("127.0.0.1", {{Port}}))
                print("CONNECTED")
            except OSError:
                print("contained")
            """);
        Assert.That(verdict.Outcome, Is.EqualTo(CodeOutcome.Passed), verdict.Reason);
        Assert.That(Volatile.Read(ref _connections), Is.Zero);
    }

    [Test, Order(8)]
    public void BackgroundProcessesDieWithTheProgram()
    {
        var verdict = Run($$"""
            import os, subprocess
            subprocess.Popen(["sleep", "{{_sleepTag}}"], start_new_session=True)  # keeps our stdout open
            pid = os.fork()
            if pid == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execv("/bin/sleep", ["sleep", "{{_sleepTag}}"])
                os._exit(0)
            os.waitpid(pid, 0)
            print("contained")
            """);
        Assert.That(verdict.Outcome, Is.EqualTo(CodeOutcome.Passed), verdict.Reason);
        Assert.That(WaitUntil(() => TaggedProcesses().Count == 0), Is.True, "the detached sleeps died with the sandbox");
    }

    [Test, Order(9)]
    public void KillingItsParentLeavesTheTestHealthy()
    {
        // The guard keeps the test process safe even if the sandbox had no PID namespace.
        var verdict = Run($$"""
            import os, signal
            parent = os.getppid()
            if parent != {{System.Environment.ProcessId}}:
                try:
                    os.kill(parent, signal.SIGKILL)
                except OSError:
                    pass
            print("contained")
            """);
        // The parent is the sandbox's PID 1, which ignores SIGKILL from inside its namespace: the program goes on.
        Assert.That(verdict.Outcome, Is.AnyOf(CodeOutcome.Passed, CodeOutcome.RuntimeError), verdict.Reason);
        Assert.That(Process.GetCurrentProcess().HasExited, Is.False);
    }

    [Test, Order(10)]
    public void RemovingTheDecoyInHomeRemovesNothing()
    {
        var verdict = Run($$"""
            import os, shutil, subprocess
            target = os.path.expanduser("~/decoy")
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run("rm -rf ~/decoy " + {{Py(Path.Combine(_home, "decoy"))}}, shell=True)
            print("contained")
            """);
        Assert.That(verdict.Outcome, Is.EqualTo(CodeOutcome.Passed), verdict.Reason);
        Assert.That(File.ReadAllText(Path.Combine(_home, "decoy", "keep.txt")), Is.EqualTo("the sandbox must not delete this"));
        Assert.That(File.Exists(Path.Combine(_home, "decoy", "nested", "keep2.txt")), Is.True);
    }

    [Test, Order(11)]
    public void ChangingDirectoryOutOfTheScratchReachesNothing()
    {
        var verdict = Run($$"""
            import os
            found = []
            os.chdir("..")
            for _ in range(5):
                os.chdir("..")
            for path in ["{{_marker}}.txt", "/usr/{{_marker}}.txt", "/etc/{{_marker}}.txt", "/dev/{{_marker}}.txt", "/proc/{{_marker}}.txt"]:
                try:
                    with open(path, "w") as f:
                        f.write("x")
                    found.append("WROTE " + path)
                except OSError:
                    pass
            for path in [{{Py(_projectRoot)}}, {{Py(_testFolder)}}, {{Py(_home)}}, {{Py(Path.GetTempPath())}} + "{{_marker}}", "/root", "/home", "/work"]:
                try:
                    os.chdir(path)
                    found.append("ENTERED " + path)
                except OSError:
                    pass
            print(" ; ".join(found) if found else "contained")
            """);
        var escaped = EscapeFiles().Where(File.Exists).ToList();
        escaped.ForEach(File.Delete); // a broken sandbox leaves at most these empty marker files; remove them
        Assert.That(verdict.Outcome, Is.EqualTo(CodeOutcome.Passed), verdict.Reason);
        Assert.That(escaped, Is.Empty);
    }

    private IEnumerable<string> EscapeFiles() =>
        new[] { "/", "/usr", "/etc", "/dev", Path.GetTempPath(), _projectRoot, _testFolder }.Select(d => Path.Combine(d, _marker + ".txt"));

    [Test, Order(12)]
    public void CtypesExitBeforeTheTestsIsNotAPass()
    {
        var verdict = Run("import ctypes\ndef add(a, b):\n    return a + b\nctypes.CDLL(None).exit(0)",
            new JsonObject { ["assert_case"] = new JsonArray("assert add(1, 2) == 3") });
        Assert.That(verdict.Outcome, Is.EqualTo(CodeOutcome.RuntimeError));
        Assert.That(verdict.Reason, Does.Contain("exited (code 0) before the assert cases test finished"));
    }

    [Test, Order(100)]
    public void AfterTheHostileSuiteTheMachineIsAsItWas()
    {
        Assert.That(WaitUntil(() => TaggedProcesses().Count == 0 && SandboxDescendants().Count == 0), Is.True,
            $"stray processes: {string.Join(", ", TaggedProcesses().Concat(SandboxDescendants()).Take(10))}");
        if (SandboxTools.Detect(SandboxOptions.Default).IsRoot)
        {
            var stray = ProcessesOfUser(SandboxOptions.Default.UnprivilegedId).Except(_sandboxUserProcessesBefore).ToList();
            Assert.That(WaitUntil(() => ProcessesOfUser(SandboxOptions.Default.UnprivilegedId).Except(_sandboxUserProcessesBefore).All(p => !IsAlive(p))), Is.True,
                $"processes of the sandbox user left: {string.Join(", ", stray.Take(10).Select(Describe))}");
        }
        Assert.That(Volatile.Read(ref _connections), Is.Zero, "the loopback listener saw a connection");

        var after = Snapshot();
        var changed = _before.Keys.Union(after.Keys)
            .Where(k => !_before.TryGetValue(k, out var b) || !after.TryGetValue(k, out var a) || a != b).ToList();
        Assert.That(changed, Is.Empty, "files outside the scratch folders changed");
        Assert.That(Directory.GetFileSystemEntries(Path.GetTempPath(), _marker + "*"), Is.Empty);
        Assert.That(Directory.GetDirectories(Path.GetTempPath(), $"or1-sandbox-{System.Environment.ProcessId}-*"), Is.Empty,
            "the host folders of the programs are deleted");
    }

    // ---- machine state ----

    private Dictionary<string, (long, DateTime)> Snapshot()
    {
        var files = new Dictionary<string, (long, DateTime)>(StringComparer.Ordinal);
        void Add(string path)
        {
            var info = new FileInfo(path);
            if (info.Exists) files[path] = (info.Length, info.LastWriteTimeUtc);
        }
        foreach (var file in ProjectFiles(_projectRoot)) Add(file);
        foreach (var file in Directory.EnumerateFiles(_home, "*", SearchOption.AllDirectories)) Add(file);
        foreach (var file in new[] { "/etc/shadow", "/etc/passwd", "/etc/group", "/etc/hosts" }) Add(file);
        string realSsh = Path.Combine(System.Environment.GetEnvironmentVariable("HOME") ?? "/root", ".ssh");
        if (Directory.Exists(realSsh))
        {
            foreach (var file in Directory.EnumerateFiles(realSsh)) Add(file);
        }
        return files;
    }

    private static IEnumerable<string> ProjectFiles(string root)
    {
        var skip = new HashSet<string>(StringComparer.Ordinal) { "bin", "obj", ".git", "TestResults", "BenchmarkDotNet.Artifacts", "build", "runs" };
        var pending = new Stack<string>([root]);
        while (pending.Count > 0)
        {
            string dir = pending.Pop();
            foreach (var file in Directory.EnumerateFiles(dir)) yield return file;
            foreach (var sub in Directory.EnumerateDirectories(dir))
            {
                if (!skip.Contains(Path.GetFileName(sub))) pending.Push(sub);
            }
        }
    }

    private static bool WaitUntil(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(5))
        {
            if (condition()) return true;
            Thread.Sleep(100);
        }
        return condition();
    }

    private List<string> TaggedProcesses() =>
        AllProcesses().Where(p => CommandLine(p).Contains(_sleepTag, StringComparison.Ordinal)).Select(Describe).ToList();

    /// <summary>Sandbox-related processes still below this test process.</summary>
    private static List<string> SandboxDescendants()
    {
        var parents = AllProcesses().ToDictionary(p => p, ParentOf);
        int self = System.Environment.ProcessId;
        var names = new[] { "bwrap", "python", "sleep", "setpriv", "prlimit", "sh", "rm" };
        return parents.Keys.Where(p =>
        {
            for (int q = parents[p], hops = 0; q > 1 && hops < 64; q = parents.GetValueOrDefault(q), hops++)
            {
                if (q == self) return true;
            }
            return false;
        }).Where(p => names.Any(n => Name(p).StartsWith(n, StringComparison.Ordinal))).Select(Describe).ToList();
    }

    private static HashSet<int> ProcessesOfUser(int uid) =>
        AllProcesses().Where(p => UserOf(p) == uid).ToHashSet();

    private static IEnumerable<int> AllProcesses() =>
        Directory.EnumerateDirectories("/proc").Select(Path.GetFileName).Where(n => n!.All(char.IsAsciiDigit)).Select(n => int.Parse(n!, System.Globalization.CultureInfo.InvariantCulture));

    private static bool IsAlive(int pid) => Directory.Exists($"/proc/{pid}");

    private static string Read(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }

    private static string CommandLine(int pid) => Read($"/proc/{pid}/cmdline").Replace('\0', ' ');

    private static string Name(int pid) => Read($"/proc/{pid}/comm").Trim();

    private static int ParentOf(int pid)
    {
        string stat = Read($"/proc/{pid}/stat");
        int close = stat.LastIndexOf(')');
        if (close < 0) return 0;
        var fields = stat[(close + 2)..].Split(' ');
        return fields.Length > 1 && int.TryParse(fields[1], out int ppid) ? ppid : 0;
    }

    private static int UserOf(int pid)
    {
        foreach (var line in Read($"/proc/{pid}/status").Split('\n'))
        {
            if (!line.StartsWith("Uid:", StringComparison.Ordinal)) continue;
            var parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            return parts.Length > 1 && int.TryParse(parts[1], out int uid) ? uid : -1;
        }
        return -1;
    }

    private static string Describe(int pid) => $"{pid} {Name(pid)} [{CommandLine(pid).Trim()}]";
}

using System.Collections.Concurrent;
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace OR1.Grpo.Rewards.Code;

/// <summary>
/// Runs one untrusted Python program per call in a fresh bubblewrap sandbox:
/// <list type="bullet">
/// <item>namespaces: <c>--unshare-all --unshare-user --disable-userns</c> (user, mount, PID, network with only
/// its own loopback, IPC, UTS, cgroup; no nested user namespaces), <c>--die-with-parent</c>,
/// <c>--new-session</c>, <c>--cap-drop ALL</c>; as root the sandbox is first dropped to an unprivileged user
/// with <c>setpriv</c> (<see cref="SandboxOptions.UnprivilegedId"/>).</item>
/// <item>file system: a read-only root made of /usr (plus /bin, /lib... as links or read-only binds), a few
/// /etc files Python uses (ld.so.cache, localtime, passwd, group, python3.x), the interpreter's prefix when
/// outside /usr; fresh /proc and /dev (read-only, with a size-capped /dev/shm); the working folder /sandbox is
/// a size-capped tmpfs (also /tmp) holding the program's files read-only. Nothing else: no /root, /home,
/// /etc/shadow or project files. The tmpfs vanishes with the sandbox; the host folder the files come from is
/// deleted after the run.</item>
/// <item>limits inside, via prlimit: RLIMIT_CPU (wall limit + 1 s), RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE,
/// RLIMIT_NOFILE, no core files; a clean environment (<c>--clearenv</c>).</item>
/// <item>limits outside: the wall-clock limit and the output cap kill the whole process tree; with
/// <c>--die-with-parent</c> and the PID namespace nothing inside survives its bubblewrap.</item>
/// </list>
/// Thread-safe; concurrency is bounded by the caller (<see cref="CodeReward"/>'s worker pool).
/// </summary>
public sealed class SandboxRunner
{
    /// <summary>The working folder inside the sandbox.</summary>
    public const string WorkFolder = "/sandbox";

    private static readonly ConcurrentDictionary<string, string?> SelfTests = new(StringComparer.Ordinal);
    private static long s_runs;

    /// <summary>Finds the tools and checks that a sandbox can be built (or, unsafe, that python exists).</summary>
    /// <exception cref="SandboxUnavailableException">a tool is missing; the message says what to install.</exception>
    public SandboxRunner(SandboxOptions? options = null, SandboxTools? tools = null)
    {
        Options = options ?? SandboxOptions.Default;
        if (Options.TimeLimit <= TimeSpan.Zero) throw new ArgumentException("the time limit must be positive", nameof(options));
        if (Options.MaxOutputBytes <= 0) throw new ArgumentException("the output cap must be positive", nameof(options));
        Tools = tools ?? SandboxTools.Detect(Options);
        string? problem = Options.UnsafeNoSandbox ? Tools.UnsandboxedProblem : Tools.SandboxProblem;
        if (problem is not null) throw new SandboxUnavailableException($"code rewards cannot run: {problem}");
    }

    /// <summary>The settings in force.</summary>
    public SandboxOptions Options { get; }

    /// <summary>The tools found.</summary>
    public SandboxTools Tools { get; }

    /// <summary>False only with <see cref="SandboxOptions.UnsafeNoSandbox"/>.</summary>
    public bool Sandboxed => !Options.UnsafeNoSandbox;

    /// <summary>
    /// Null when programs run on this machine with <paramref name="options"/> (tools present and a tiny program
    /// prints the right answer in the sandbox), else why not, with what to install or enable. Cached per
    /// configuration for the life of the process.
    /// </summary>
    public static string? Availability(SandboxOptions? options = null)
    {
        options ??= SandboxOptions.Default;
        var tools = SandboxTools.Detect(options);
        string? problem = options.UnsafeNoSandbox ? tools.UnsandboxedProblem : tools.SandboxProblem;
        if (problem is not null) return problem;
        string key = string.Join('\n', tools.Bwrap, tools.Python, options.UnsafeNoSandbox, tools.IsRoot, options.UnprivilegedId, options.ScratchRoot);
        return SelfTests.GetOrAdd(key, _ => new SandboxRunner(options with { Log = _ => { } }, tools).SelfTest());
    }

    /// <summary>Runs <c>print(6 * 7)</c>; null when it printed 42, else what went wrong.</summary>
    public string? SelfTest()
    {
        var result = Run(SandboxProgram.Script("print(6 * 7)", timeLimit: TimeSpan.FromSeconds(20)));
        if (result.Succeeded && result.Stdout.Trim() == "42") return null;
        string said = Tail(result.Stderr + "\n" + result.Detail, 3);
        string hint = said.Contains("uid map", StringComparison.OrdinalIgnoreCase) || said.Contains("namespace", StringComparison.OrdinalIgnoreCase)
            ? " (user namespaces look disabled: enable unprivileged user namespaces, e.g. sysctl -w kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0, or kernel.apparmor_restrict_unprivileged_userns=0)"
            : "";
        return $"the sandbox does not run a test program ({result.Status}, exit code {result.ExitCode}): {said}{hint}";
    }

    /// <summary>The command line that runs <paramref name="program"/> with its files in <paramref name="hostFolder"/>.</summary>
    public IReadOnlyList<string> CommandLine(SandboxProgram program, string hostFolder) =>
        Sandboxed ? SandboxCommand(program, hostFolder) : UnsafeCommand(program);

    /// <summary>Runs one program; never throws for anything the program does.</summary>
    public SandboxResult Run(SandboxProgram program, CancellationToken cancellation = default)
    {
        Validate(program);
        if (cancellation.IsCancellationRequested) return new SandboxResult(SandboxStatus.Cancelled, -1, "", "", TimeSpan.Zero, "cancelled before start");
        string folder;
        try
        {
            folder = CreateHostFolder(program);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return new SandboxResult(SandboxStatus.SandboxError, -1, "", "", TimeSpan.Zero, $"cannot write the program files: {e.Message}");
        }
        try
        {
            if (!Sandboxed)
            {
                (Options.Log ?? Console.Error.WriteLine)(
                    "warning: running model-written code WITHOUT a sandbox (unsafe-no-sandbox): it can read and write your files and use the network");
            }
            return Execute(CommandLine(program, folder), program, folder, cancellation);
        }
        finally
        {
            DeleteFolder(folder);
        }
    }

    private TimeSpan TimeLimitOf(SandboxProgram program) => program.TimeLimit ?? Options.TimeLimit;

    private IReadOnlyDictionary<string, string> EnvironmentFor(string home)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["PATH"] = "/usr/local/bin:/usr/bin:/bin",
            ["HOME"] = home,
            ["TMPDIR"] = Sandboxed ? "/tmp" : home,
            ["LANG"] = "C.UTF-8",
            ["PYTHONIOENCODING"] = "utf-8",
            ["PYTHONDONTWRITEBYTECODE"] = "1",
            ["PYTHONHASHSEED"] = "0",
            ["OPENBLAS_NUM_THREADS"] = "1",
            ["OMP_NUM_THREADS"] = "1",
            ["MKL_NUM_THREADS"] = "1",
        };
        if (Options.Environment is { } extra)
        {
            foreach (var (name, value) in extra)
            {
                if (name.Length == 0 || name.Contains('=') || name.Contains('\0') || value.Contains('\0'))
                    throw new ArgumentException($"invalid environment variable '{name}'");
                env[name] = value;
            }
        }
        return env;
    }

    private List<string> SandboxCommand(SandboxProgram program, string hostFolder)
    {
        var args = new List<string>();
        if (Tools.IsRoot)
        {
            string id = Options.UnprivilegedId.ToString(CultureInfo.InvariantCulture);
            args.AddRange([Tools.Setpriv!, $"--reuid={id}", $"--regid={id}", "--clear-groups", "--"]);
        }
        args.AddRange([Tools.Bwrap!, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]);
        args.AddRange(["--ro-bind", "/usr", "/usr"]);
        foreach (var top in new[] { "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32" })
        {
            var info = new FileInfo(top);
            if (info.LinkTarget is { } target) args.AddRange(["--symlink", target, top]);
            else if (Directory.Exists(top)) args.AddRange(["--ro-bind", top, top]);
        }
        foreach (var file in new[] { "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf" })
        {
            if (File.Exists(file)) args.AddRange(["--ro-bind", file, file]);
        }
        foreach (var folder in EtcFolders()) args.AddRange(["--ro-bind", folder, folder]);
        foreach (var folder in Tools.PythonFolders) args.AddRange(["--ro-bind", folder, folder]);
        args.AddRange(["--proc", "/proc", "--dev", "/dev"]);
        args.AddRange(["--size", Bytes(Options.SharedMemoryBytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]);
        args.AddRange(["--size", Bytes(Options.ScratchBytes), "--tmpfs", WorkFolder, "--dir", WorkFolder + "/tmp", "--symlink", WorkFolder + "/tmp", "/tmp"]);
        foreach (var name in program.Files.Keys.Order(StringComparer.Ordinal))
            args.AddRange(["--ro-bind", Path.Combine(hostFolder, name), $"{WorkFolder}/{name}"]);
        args.AddRange(["--chdir", WorkFolder, "--remount-ro", "/", "--clearenv"]);
        foreach (var (name, value) in EnvironmentFor(WorkFolder)) args.AddRange(["--setenv", name, value]);
        args.Add("--");
        args.AddRange(Limits(program));
        args.AddRange([Tools.Python!, "-B", program.MainFile]);
        return args;
    }

    private List<string> UnsafeCommand(SandboxProgram program)
    {
        var args = new List<string>();
        if (Tools.Prlimit is not null) args.AddRange(Limits(program));
        args.AddRange([Tools.Python!, "-B", program.MainFile]);
        return args;
    }

    private List<string> Limits(SandboxProgram program)
    {
        long cpu = (long)System.Math.Ceiling(TimeLimitOf(program).TotalSeconds) + 1;
        return
        [
            Tools.Prlimit!,
            $"--cpu={cpu}:{cpu + 1}",
            $"--as={Options.MemoryLimitBytes}",
            $"--nproc={Options.MaxProcesses}",
            $"--fsize={Options.MaxFileBytes}",
            $"--nofile={Options.MaxOpenFiles}",
            "--core=0",
            "--",
        ];
    }

    private static IEnumerable<string> EtcFolders()
    {
        if (!Directory.Exists("/etc")) yield break;
        foreach (var name in new[] { "/etc/alternatives", "/etc/ld.so.conf.d" })
        {
            if (Directory.Exists(name)) yield return name;
        }
        string[] python;
        try
        {
            python = Directory.GetDirectories("/etc", "python3*");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            yield break;
        }
        foreach (var folder in python.Order(StringComparer.Ordinal)) yield return folder;
    }

    private static string Bytes(long n) => n.ToString(CultureInfo.InvariantCulture);

    private static void Validate(SandboxProgram program)
    {
        if (!program.Files.ContainsKey(program.MainFile)) throw new ArgumentException($"the main file '{program.MainFile}' is not among the files");
        foreach (var name in program.Files.Keys)
        {
            if (name.Length == 0 || name.Length > 64 || name.StartsWith('.') || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.'))
                throw new ArgumentException($"invalid program file name '{name}'");
        }
    }

    private string CreateHostFolder(SandboxProgram program)
    {
        string root = Options.ScratchRoot ?? Path.GetTempPath();
        long run = Interlocked.Increment(ref s_runs);
        string folder = Path.Combine(root, $"or1-sandbox-{System.Environment.ProcessId}-{run}-{Convert.ToHexString(RandomNumberGenerator.GetBytes(6)).ToLowerInvariant()}");
        var readable = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute
            | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(folder);
        else Directory.CreateDirectory(folder, readable);
        if (!Sandboxed) Directory.CreateDirectory(Path.Combine(folder, "tmp"));
        foreach (var (name, content) in program.Files)
        {
            string path = Path.Combine(folder, name);
            File.WriteAllText(path, content, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        }
        return folder;
    }

    private static void DeleteFolder(string folder)
    {
        for (int attempt = 0; attempt < 3; attempt++)
        {
            try
            {
                if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
                return;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // An unsandboxed program may have left read-only folders: make everything writable and retry.
                if (OperatingSystem.IsWindows()) continue;
                try
                {
                    foreach (var dir in Directory.EnumerateDirectories(folder, "*", SearchOption.AllDirectories).Prepend(folder))
                        File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
                }
                catch (Exception inner) when (inner is IOException or UnauthorizedAccessException)
                {
                }
            }
        }
    }

    private enum Kill
    {
        None,
        TimeLimit,
        OutputLimit,
        Cancelled,
    }

    private SandboxResult Execute(IReadOnlyList<string> argv, SandboxProgram program, string hostFolder, CancellationToken cancellation)
    {
        var info = new ProcessStartInfo(argv[0])
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Sandboxed ? "/" : hostFolder,
        };
        foreach (var arg in argv.Skip(1)) info.ArgumentList.Add(arg);
        info.Environment.Clear();
        foreach (var (name, value) in Sandboxed ? new Dictionary<string, string> { ["PATH"] = "/usr/bin:/bin" } : EnvironmentFor(hostFolder))
            info.Environment[name] = value;

        using var process = new Process { StartInfo = info };
        var clock = Stopwatch.StartNew();
        try
        {
            if (!process.Start()) return new SandboxResult(SandboxStatus.SandboxError, -1, "", "", clock.Elapsed, $"{argv[0]} did not start");
        }
        catch (Exception e) when (e is Win32Exception or InvalidOperationException or IOException)
        {
            return new SandboxResult(SandboxStatus.SandboxError, -1, "", "", clock.Elapsed, $"cannot start {argv[0]}: {e.Message}");
        }

        int killed = (int)Kill.None;
        void KillFor(Kill reason)
        {
            if (Interlocked.CompareExchange(ref killed, (int)reason, (int)Kill.None) != (int)Kill.None) return;
            KillTree(process);
        }

        int cap = program.MaxOutputBytes ?? Options.MaxOutputBytes;
        var stdout = new CappedReader(process.StandardOutput.BaseStream, cap, () => KillFor(Kill.OutputLimit), "stdout");
        var stderr = new CappedReader(process.StandardError.BaseStream, cap, () => KillFor(Kill.OutputLimit), "stderr");
        var stdinBytes = Encoding.UTF8.GetBytes(program.Stdin);
        var writer = new Thread(() =>
        {
            try
            {
                process.StandardInput.BaseStream.Write(stdinBytes);
                process.StandardInput.BaseStream.Flush();
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
            {
                // The program exited or closed its input without reading all of it.
            }
            finally
            {
                try
                {
                    process.StandardInput.Close();
                }
                catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
                {
                }
            }
        }) { IsBackground = true, Name = "sandbox stdin" };
        writer.Start();

        var limit = TimeLimitOf(program);
        using (cancellation.Register(() => KillFor(Kill.Cancelled)))
        {
            if (!process.WaitForExit(limit)) KillFor(Kill.TimeLimit);
            // After a kill the process is gone within milliseconds; keep killing in case a kill raced a fork.
            while (!process.WaitForExit(TimeSpan.FromSeconds(2))) KillTree(process);
        }
        var elapsed = clock.Elapsed;
        // End of output: with the PID namespace gone nothing holds the pipes. Unsandboxed, a detached child
        // could; it is not waited for beyond this.
        var drain = TimeSpan.FromSeconds(Sandboxed ? 10 : 1);
        bool drained = stdout.Join(drain) & stderr.Join(drain);
        writer.Join(TimeSpan.FromSeconds(1));
        string outText = stdout.Text(), errText = stderr.Text();
        int exitCode = process.ExitCode;

        var reason = (Kill)Volatile.Read(ref killed);
        switch (reason)
        {
            case Kill.TimeLimit:
                return new SandboxResult(SandboxStatus.TimeLimit, exitCode, outText, errText, elapsed,
                    $"killed after {limit.TotalSeconds:0.###} s of wall clock");
            case Kill.OutputLimit:
                string stream = stdout.Overflowed ? "stdout" : "stderr";
                return new SandboxResult(SandboxStatus.OutputLimit, exitCode, outText, errText, elapsed,
                    $"killed after writing more than {cap} bytes to {stream}");
            case Kill.Cancelled:
                return new SandboxResult(SandboxStatus.Cancelled, exitCode, outText, errText, elapsed, "cancelled");
        }
        if (Sandboxed && exitCode != 0 && SandboxFailure(errText) is { } failure)
            return new SandboxResult(SandboxStatus.SandboxError, exitCode, outText, errText, elapsed, failure);
        string detail = drained ? "" : "output still open after exit (a detached process kept it)";
        return new SandboxResult(SandboxStatus.Exited, exitCode, outText, errText, elapsed, detail);
    }

    /// <summary>bubblewrap, setpriv and prlimit report their own failures as "tool: message" on the first line.</summary>
    private static string? SandboxFailure(string stderr)
    {
        int end = stderr.IndexOf('\n');
        string first = (end < 0 ? stderr : stderr[..end]).Trim();
        foreach (var tool in new[] { "bwrap: ", "setpriv: ", "prlimit: " })
        {
            if (first.StartsWith(tool, StringComparison.Ordinal)) return first;
        }
        return null;
    }

    private static void KillTree(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (Exception e) when (e is InvalidOperationException or Win32Exception or NotSupportedException)
        {
            // Already gone, or a child vanished while the tree was walked.
        }
    }

    /// <summary>The last <paramref name="lines"/> non-empty lines of <paramref name="text"/>, joined with " | ".</summary>
    internal static string Tail(string text, int lines)
    {
        var kept = text.Split('\n').Select(l => l.TrimEnd('\r').Trim()).Where(l => l.Length > 0).TakeLast(lines)
            .Select(l => l.Length <= 200 ? l : l[..197] + "...");
        return string.Join(" | ", kept);
    }
}

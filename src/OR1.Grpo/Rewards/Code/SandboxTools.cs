using System.Diagnostics;
using System.Runtime.InteropServices;

namespace OR1.Grpo.Rewards.Code;

/// <summary>
/// The programs the sandbox is made of, found on this machine: bubblewrap, the Python interpreter (a real
/// binary, never a pyenv-style shim: /usr/bin/python3 when present, else python3 on PATH resolved through
/// the interpreter itself), prlimit (util-linux) for the rlimits, and setpriv (util-linux) to drop root.
/// </summary>
public sealed record SandboxTools
{
    /// <summary>bubblewrap, or null when not found.</summary>
    public string? Bwrap { get; init; }

    /// <summary>The interpreter's real path, or null when not found.</summary>
    public string? Python { get; init; }

    /// <summary>prlimit, or null when not found.</summary>
    public string? Prlimit { get; init; }

    /// <summary>setpriv, or null when not found.</summary>
    public string? Setpriv { get; init; }

    /// <summary>Folders outside /usr the interpreter needs (its prefix), bound read-only into the sandbox.</summary>
    public IReadOnlyList<string> PythonFolders { get; init; } = [];

    /// <summary>Whether this process runs as root (the sandbox then drops to <see cref="SandboxOptions.UnprivilegedId"/>).</summary>
    public bool IsRoot { get; init; }

    /// <summary>Why a sandbox cannot be built from these tools, with what to install; null when it can.</summary>
    public string? SandboxProblem
    {
        get
        {
            if (!OperatingSystem.IsLinux()) return "code rewards need Linux (bubblewrap sandbox)";
            var missing = new List<string>();
            if (Bwrap is null) missing.Add("bubblewrap (bwrap) is not installed: apt-get install bubblewrap");
            if (Python is null) missing.Add("python3 is not installed: apt-get install python3");
            if (Prlimit is null) missing.Add("prlimit is not installed: apt-get install util-linux");
            if (IsRoot && Setpriv is null) missing.Add("setpriv (needed to drop root) is not installed: apt-get install util-linux");
            if (IsRoot && Python is not null && PythonFolders.FirstOrDefault(f => !OpenToOthers(f)) is { } hidden)
                missing.Add($"{Python} lives in {hidden}, which the unprivileged sandbox user cannot read: install the system python3 (apt-get install python3) or set SandboxOptions.PythonPath to an interpreter outside private folders");
            return missing.Count == 0 ? null : string.Join("; ", missing);
        }
    }

    /// <summary>Why programs cannot run even without a sandbox; null when they can.</summary>
    public string? UnsandboxedProblem => Python is null ? "python3 is not installed: apt-get install python3" : null;

    /// <summary>Looks the tools up, honouring the paths set in <paramref name="options"/>.</summary>
    public static SandboxTools Detect(SandboxOptions options)
    {
        string? python = options.PythonPath is { } explicitPython ? Existing(explicitPython) : FindPython();
        IReadOnlyList<string> folders = [];
        if (python is not null && !python.StartsWith("/usr/", StringComparison.Ordinal))
        {
            var probed = ProbeInterpreter(python);
            if (probed is null) python = null;
            else (python, folders) = probed.Value;
        }
        return new SandboxTools
        {
            Bwrap = options.BwrapPath is { } explicitBwrap ? Existing(explicitBwrap) : Find("bwrap"),
            Python = python,
            Prlimit = Find("prlimit"),
            Setpriv = Find("setpriv"),
            PythonFolders = folders,
            IsRoot = OperatingSystem.IsLinux() && NativeMethods.geteuid() == 0,
        };
    }

    /// <summary>Whether every user may read <paramref name="folder"/> and pass through each folder above it.</summary>
    private static bool OpenToOthers(string folder)
    {
        if (OperatingSystem.IsWindows()) return true;
        try
        {
            if (!File.GetUnixFileMode(folder).HasFlag(UnixFileMode.OtherRead)) return false;
            for (var dir = new DirectoryInfo(folder); dir is not null; dir = dir.Parent)
            {
                if (!dir.UnixFileMode.HasFlag(UnixFileMode.OtherExecute)) return false;
            }
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static string? FindPython()
    {
        foreach (var preferred in new[] { "/usr/bin/python3", "/usr/local/bin/python3" })
        {
            if (File.Exists(preferred)) return Resolve(preferred);
        }
        return Find("python3") is { } onPath ? Resolve(onPath) : null;
    }

    /// <summary>Asks an interpreter outside /usr (pyenv, conda, a venv) for its real binary and prefix folders.</summary>
    private static (string Python, IReadOnlyList<string> Folders)? ProbeInterpreter(string candidate)
    {
        try
        {
            var info = new ProcessStartInfo(candidate)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var arg in new[] { "-I", "-c", "import os, sys; print(os.path.realpath(sys.executable)); print(sys.base_prefix); print(sys.prefix)" })
                info.ArgumentList.Add(arg);
            using var process = Process.Start(info);
            if (process is null) return null;
            string output = process.StandardOutput.ReadToEnd();
            process.StandardError.ReadToEnd();
            if (!process.WaitForExit(10_000) || process.ExitCode != 0) return null;
            var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (lines.Length < 3 || !File.Exists(lines[0])) return null;
            var folders = lines.Skip(1).Append(Path.GetDirectoryName(lines[0])!)
                .Where(f => f.Length > 1 && Directory.Exists(f) && !f.StartsWith("/usr/", StringComparison.Ordinal) && f != "/usr")
                .Distinct(StringComparer.Ordinal).ToList();
            // Keep only outermost folders (a venv inside the prefix needs no second bind).
            folders = folders.Where(f => !folders.Any(o => o != f && f.StartsWith(o.TrimEnd('/') + "/", StringComparison.Ordinal))).ToList();
            return (lines[0], folders);
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or IOException or InvalidOperationException)
        {
            return null;
        }
    }

    private static string? Find(string name)
    {
        var dirs = (System.Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"]);
        foreach (var dir in dirs)
        {
            string path = Path.Combine(dir, name);
            if (File.Exists(path)) return path;
        }
        return null;
    }

    private static string? Existing(string path) => File.Exists(path) ? Resolve(path) : null;

    private static string Resolve(string path)
    {
        try
        {
            var target = File.ResolveLinkTarget(path, returnFinalTarget: true);
            return target?.FullName ?? Path.GetFullPath(path);
        }
        catch (IOException)
        {
            return Path.GetFullPath(path);
        }
    }

    private static class NativeMethods
    {
        [DllImport("libc", SetLastError = false)]
        public static extern uint geteuid();
    }
}

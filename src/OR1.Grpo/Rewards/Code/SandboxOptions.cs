namespace OR1.Grpo.Rewards.Code;

/// <summary>
/// How one untrusted program runs (see <see cref="SandboxRunner"/>): the tools, the limits set inside the
/// sandbox, and the limits enforced from outside. The defaults follow docs/RECIPE.md "Rewards": 6 s of wall
/// clock per test, 1 GB of address space.
/// </summary>
public sealed record SandboxOptions
{
    /// <summary>The defaults.</summary>
    public static SandboxOptions Default { get; } = new();

    /// <summary>
    /// Wall-clock limit of one program (one test; an assert-case program gets this once per assert). Enforced
    /// from outside by killing the whole process tree. Default 6 s.
    /// </summary>
    public TimeSpan TimeLimit { get; init; } = TimeSpan.FromSeconds(6);

    /// <summary>RLIMIT_AS of every process in the sandbox, in bytes. Default 1 GiB.</summary>
    public long MemoryLimitBytes { get; init; } = 1L << 30;

    /// <summary>
    /// RLIMIT_NPROC: processes plus threads of the sandbox user inside the sandbox (its own user namespace, so
    /// other programs do not count), the sandbox's own init process included. Default 16.
    /// </summary>
    public int MaxProcesses { get; init; } = 16;

    /// <summary>RLIMIT_FSIZE: the largest file a program may write, in bytes. Default 16 MiB.</summary>
    public long MaxFileBytes { get; init; } = 16L << 20;

    /// <summary>RLIMIT_NOFILE: open file descriptors per process. Default 256.</summary>
    public int MaxOpenFiles { get; init; } = 256;

    /// <summary>Size of the scratch folder (a tmpfs, also holding /tmp) in bytes. Default 64 MiB.</summary>
    public long ScratchBytes { get; init; } = 64L << 20;

    /// <summary>Size of /dev/shm (a tmpfs) in bytes. Default 16 MiB.</summary>
    public long SharedMemoryBytes { get; init; } = 16L << 20;

    /// <summary>
    /// At most this many bytes are read from stdout, and as many from stderr; a program that writes more is
    /// killed ("output limit"). Raised to twice the expected output when that is larger. Default 1 MiB.
    /// </summary>
    public int MaxOutputBytes { get; init; } = 1 << 20;

    /// <summary>
    /// Environment variables set in the sandbox on top of the clean default (PATH, HOME=/sandbox, LANG, TMPDIR,
    /// one BLAS/OpenMP thread); a value here replaces the default of the same name (HOME included).
    /// </summary>
    public IReadOnlyDictionary<string, string>? Environment { get; init; }

    /// <summary>The Python interpreter; null finds the machine's python3 (see <see cref="SandboxTools"/>).</summary>
    public string? PythonPath { get; init; }

    /// <summary>bubblewrap; null looks for <c>bwrap</c> on PATH and in /usr/bin.</summary>
    public string? BwrapPath { get; init; }

    /// <summary>
    /// When this process runs as root, the sandbox is started as this user and group id (with setpriv), so the
    /// program is an unprivileged user outside its namespaces too. Default 65534 (nobody).
    /// </summary>
    public int UnprivilegedId { get; init; } = 65534;

    /// <summary>Folder under which per-program host folders are made; null is the system temp folder.</summary>
    public string? ScratchRoot { get; init; }

    /// <summary>
    /// Runs programs WITHOUT a sandbox (only rlimits, a clean environment, a scratch working folder and the
    /// outside limits): for machines that cannot run bubblewrap. Every program run logs a warning.
    /// </summary>
    public bool UnsafeNoSandbox { get; init; }

    /// <summary>Where warnings go (one line each); null writes them to standard error.</summary>
    public Action<string>? Log { get; init; }
}

using System.Globalization;
using System.Text.RegularExpressions;

namespace OR1.Tests.Kernels;

/// <summary>One kernel entry of one kernels/*.cu file compiled for one architecture, as ptxas, the PTX and the SASS describe it.</summary>
internal sealed class CompiledKernel(string file, int arch, string name)
{
    /// <summary>Registers per SM on sm_80 and sm_90, and the most one thread may use.</summary>
    public const int RegistersPerSm = 65_536, MaxRegistersPerThread = 255;

    public string File { get; } = file;
    public int Arch { get; } = arch;
    public string Name { get; } = name;
    public int Registers { get; set; }
    public int StaticSharedBytes { get; set; }
    /// <summary>Local memory the thread's stack frame takes (local arrays, the slow paths of sin/cos); not a spill.</summary>
    public int StackFrameBytes { get; set; }
    public int SpillStoreBytes { get; set; }
    public int SpillLoadBytes { get; set; }
    /// <summary>Tensor-core matrix multiply-accumulate instructions in the SASS (mma.sync compiles to HMMA).</summary>
    public int Hmma { get; set; }
    /// <summary>16-byte global loads in the SASS (LDG.E.128, with or without a cache qualifier).</summary>
    public int Ldg128 { get; set; }
    /// <summary>maxThreadsPerBlock of the launch bounds (.maxntid x * y * z in the PTX); null when the entry has none.</summary>
    public int? MaxThreads { get; set; }
    /// <summary>minBlocksPerSM of the launch bounds (.minnctapersm); 0 when not given.</summary>
    public int MinBlocks { get; set; }

    /// <summary>The registers per thread the launch bounds leave: 65,536 / (threads x blocks), at most 255 (ptxas rounds it
    /// down further to its allocation granularity; it never allocates more).</summary>
    public int RegisterBudget => MaxThreads is int threads
        ? Math.Min(MaxRegistersPerThread, RegistersPerSm / (threads * Math.Max(1, MinBlocks)))
        : MaxRegistersPerThread;

    public string LaunchBounds => MaxThreads is int threads ? MinBlocks > 0 ? $"({threads}, {MinBlocks})" : $"({threads})" : "none";
}

/// <summary>
/// One kernels/*.cu file compiled for one architecture with the command the brief of issue 18 names
/// (nvcc -O3 -cubin -arch=sm_XX -Xptxas -v, keeping the PTX), then disassembled with cuobjdump -sass.
/// </summary>
internal sealed partial class KernelCompilation
{
    public required string File { get; init; }
    public required int Arch { get; init; }
    public required bool Succeeded { get; init; }
    /// <summary>nvcc's messages (ptxas -v included).</summary>
    public required string Log { get; init; }
    public required IReadOnlyList<CompiledKernel> Kernels { get; init; }
    /// <summary>Functions that are not entries (device functions ptxas kept as calls) and spill: "name: N bytes".</summary>
    public required IReadOnlyList<string> SpillingCallees { get; init; }
    public required TimeSpan Elapsed { get; init; }

    public static async Task<KernelCompilation> CompileAsync(NvccToolchain tools, string source, int arch, string workDirectory)
    {
        var started = DateTime.UtcNow;
        string file = Path.GetFileName(source);
        string stem = Path.GetFileNameWithoutExtension(source);
        string directory = Path.Combine(workDirectory, $"{stem}.sm_{arch}");
        Directory.CreateDirectory(directory);
        string cubin = Path.Combine(directory, stem + ".cubin");
        var timeout = TimeSpan.FromMinutes(5);
        // -keep leaves the PTX of the same compilation in the keep folder: its .maxntid / .minnctapersm are the launch bounds.
        var (exit, output, error) = await NvccToolchain.RunAsync(tools.Nvcc,
        [
            "-ccbin", tools.HostCompiler, "-std=c++17", "-O3", "-cubin", $"-arch=sm_{arch}", "-Xptxas", "-v",
            "-I", Path.GetDirectoryName(source)!, source, "-o", cubin, "-keep", "-keep-dir", directory,
        ], timeout);
        string log = output + error;
        if (exit != 0)
            return new KernelCompilation
            {
                File = file, Arch = arch, Succeeded = false, Log = log, Kernels = [], SpillingCallees = [], Elapsed = DateTime.UtcNow - started,
            };
        var (sassExit, sass, sassError) = await NvccToolchain.RunAsync(tools.Cuobjdump, ["-sass", cubin], timeout);
        if (sassExit != 0) throw new InvalidOperationException($"cuobjdump -sass {cubin} failed: {sassError}");
        string ptx = System.IO.File.ReadAllText(Path.Combine(directory, stem + ".ptx"));

        var kernels = ParsePtxas(log, file, arch, out var spillingCallees);
        var bounds = ParseLaunchBounds(ptx);
        var hmma = CountHmma(sass);
        var ldg128 = CountPerFunction(sass, Ldg128());
        foreach (var kernel in kernels)
        {
            if (bounds.TryGetValue(kernel.Name, out var b)) (kernel.MaxThreads, kernel.MinBlocks) = b;
            kernel.Hmma = hmma.GetValueOrDefault(kernel.Name);
            kernel.Ldg128 = ldg128.GetValueOrDefault(kernel.Name);
        }
        return new KernelCompilation
        {
            File = file, Arch = arch, Succeeded = true, Log = log, Kernels = kernels, SpillingCallees = spillingCallees,
            Elapsed = DateTime.UtcNow - started,
        };
    }

    /// <summary>
    /// ptxas -v, per entry: "Compiling entry function 'k' for 'sm_90'", "Function properties for k" followed by
    /// "S bytes stack frame, T bytes spill stores, L bytes spill loads", then "Used R registers[, M bytes smem][, ...]".
    /// Device functions ptxas did not inline get a "Function properties" block of their own, with no entry line.
    /// </summary>
    internal static List<CompiledKernel> ParsePtxas(string log, string file, int arch, out List<string> spillingCallees)
    {
        var kernels = new Dictionary<string, CompiledKernel>(StringComparer.Ordinal);
        spillingCallees = [];
        CompiledKernel? entry = null;
        string? function = null;
        foreach (string line in log.Split('\n'))
        {
            if (EntryLine().Match(line) is { Success: true } e)
            {
                entry = new CompiledKernel(file, arch, e.Groups["name"].Value);
                kernels[entry.Name] = entry;
            }
            else if (PropertiesLine().Match(line) is { Success: true } p)
            {
                function = p.Groups["name"].Value;
            }
            else if (FrameLine().Match(line) is { Success: true } f && function is not null)
            {
                int stack = Int(f, "stack"), stores = Int(f, "stores"), loads = Int(f, "loads");
                if (kernels.TryGetValue(function, out var k))
                {
                    (k.StackFrameBytes, k.SpillStoreBytes, k.SpillLoadBytes) = (stack, stores, loads);
                }
                else if (stores + loads > 0)
                {
                    spillingCallees.Add($"{function}: {stores} bytes spill stores, {loads} bytes spill loads");
                }
            }
            else if (UsedLine().Match(line) is { Success: true } u && entry is not null)
            {
                entry.Registers = Int(u, "registers");
                if (SharedBytes().Match(u.Groups["rest"].Value) is { Success: true } s) entry.StaticSharedBytes = Int(s, "bytes");
                entry = null;
            }
        }
        return [.. kernels.Values];
    }

    /// <summary>The launch bounds of every .entry of a PTX module: .maxntid (or .reqntid) x[, y[, z]] and .minnctapersm.</summary>
    internal static Dictionary<string, (int? MaxThreads, int MinBlocks)> ParseLaunchBounds(string ptx)
    {
        var bounds = new Dictionary<string, (int?, int)>(StringComparer.Ordinal);
        foreach (Match entry in PtxEntry().Matches(ptx))
        {
            string directives = entry.Groups["directives"].Value;
            int? threads = null;
            if (MaxNtid().Match(directives) is { Success: true } m)
                threads = Int(m, "x") * (m.Groups["y"].Success ? Int(m, "y") : 1) * (m.Groups["z"].Success ? Int(m, "z") : 1);
            int blocks = MinCtas().Match(directives) is { Success: true } c ? Int(c, "n") : 0;
            bounds[entry.Groups["name"].Value] = (threads, blocks);
        }
        return bounds;
    }

    /// <summary>HMMA instructions per function of cuobjdump -sass's listing ("Function : name" starts each function).</summary>
    internal static Dictionary<string, int> CountHmma(string sass) => CountPerFunction(sass, Hmma());

    /// <summary>Lines matching <paramref name="instruction"/> per function of cuobjdump -sass's listing.</summary>
    internal static Dictionary<string, int> CountPerFunction(string sass, Regex instruction)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        string? function = null;
        foreach (string line in sass.Split('\n'))
        {
            if (SassFunction().Match(line) is { Success: true } f)
            {
                function = f.Groups["name"].Value;
                counts.TryAdd(function, 0);
            }
            else if (function is not null && instruction.IsMatch(line))
            {
                counts[function]++;
            }
        }
        return counts;
    }

    private static int Int(Match m, string group) => int.Parse(m.Groups[group].Value, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"Compiling entry function '(?<name>[^']+)' for 'sm_\d+'")]
    private static partial Regex EntryLine();

    [GeneratedRegex(@"Function properties for (?<name>\S+)")]
    private static partial Regex PropertiesLine();

    [GeneratedRegex(@"(?<stack>\d+) bytes stack frame, (?<stores>\d+) bytes spill stores, (?<loads>\d+) bytes spill loads")]
    private static partial Regex FrameLine();

    [GeneratedRegex(@"ptxas info\s*: Used (?<registers>\d+) registers(?<rest>.*)")]
    private static partial Regex UsedLine();

    [GeneratedRegex(@"(?<bytes>\d+) bytes smem")]
    private static partial Regex SharedBytes();

    [GeneratedRegex(@"\.entry\s+(?<name>\w+)\s*\([^)]*\)(?<directives>[^{]*)\{")]
    private static partial Regex PtxEntry();

    [GeneratedRegex(@"\.(?:maxntid|reqntid)\s+(?<x>\d+)(?:\s*,\s*(?<y>\d+))?(?:\s*,\s*(?<z>\d+))?")]
    private static partial Regex MaxNtid();

    [GeneratedRegex(@"\.minnctapersm\s+(?<n>\d+)")]
    private static partial Regex MinCtas();

    [GeneratedRegex(@"^\s*Function\s*:\s*(?<name>\S+)")]
    private static partial Regex SassFunction();

    [GeneratedRegex(@"\bHMMA\b")]
    private static partial Regex Hmma();

    [GeneratedRegex(@"\bLDG\.E\.128\b")]
    private static partial Regex Ldg128();
}

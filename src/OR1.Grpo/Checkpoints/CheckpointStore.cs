using System.Globalization;

namespace OR1.Grpo.Checkpoints;

/// <summary>
/// Checkpoint folders of a run, written atomically: the contents go into a hidden temporary folder which
/// is renamed into place only when complete, and the <c>latest</c> pointer is replaced by a file rename
/// afterwards. A crash at any moment leaves the previous checkpoint, and the pointer to it, intact.
/// </summary>
public sealed class CheckpointStore(string runDirectory, int keepLast = 3)
{
    private const string LatestFile = "latest";

    /// <summary>Folder holding step-NNNNNN checkpoints.</summary>
    public string Root { get; } = Path.Combine(runDirectory, "checkpoints");

    /// <summary>Folder name of the checkpoint of <paramref name="step"/>.</summary>
    public static string Name(int step) => "step-" + step.ToString("D6", CultureInfo.InvariantCulture);

    /// <summary>Writes a checkpoint for <paramref name="step"/> by calling <paramref name="write"/> on an empty folder.</summary>
    public string Save(int step, Action<string> write)
    {
        Directory.CreateDirectory(Root);
        string final = Path.Combine(Root, Name(step));
        string temp = Path.Combine(Root, $".{Name(step)}.{Environment.ProcessId}.tmp");
        if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        Directory.CreateDirectory(temp);
        try
        {
            write(temp);
            if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
            Directory.Move(temp, final);
        }
        catch
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            throw;
        }
        string pointerTemp = Path.Combine(Root, $".{LatestFile}.{Environment.ProcessId}.tmp");
        File.WriteAllText(pointerTemp, Name(step));
        File.Move(pointerTemp, Path.Combine(Root, LatestFile), overwrite: true);
        Prune(step);
        return final;
    }

    /// <summary>The newest complete checkpoint folder, or null when the run has none.</summary>
    public string? Latest()
    {
        string pointer = Path.Combine(Root, LatestFile);
        if (!File.Exists(pointer)) return null;
        string path = Path.Combine(Root, File.ReadAllText(pointer).Trim());
        return Directory.Exists(path) ? path : null;
    }

    /// <summary>Deletes all but the newest <c>keepLast</c> checkpoints (never the one just written).</summary>
    private void Prune(int newest)
    {
        if (keepLast <= 0) return;
        var old = Directory.GetDirectories(Root, "step-*")
            .Select(d => (Path: d, Step: int.TryParse(Path.GetFileName(d)["step-".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int s) ? s : -1))
            .Where(d => d.Step >= 0 && d.Step != newest)
            .OrderByDescending(d => d.Step)
            .Skip(keepLast - 1);
        foreach (var (path, _) in old) Directory.Delete(path, recursive: true);
    }
}

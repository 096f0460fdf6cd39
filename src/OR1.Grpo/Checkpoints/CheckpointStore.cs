using System.Globalization;

namespace OR1.Grpo.Checkpoints;

/// <summary>
/// Checkpoint folders of a run, written so that a crash at any moment leaves a complete checkpoint that
/// <c>latest</c> names:
/// <list type="number">
/// <item>the contents go into a hidden temporary folder, flushed to disk when complete;</item>
/// <item>a checkpoint of the same step that already exists is renamed aside (never deleted first), the new folder
/// renamed into place and the parent folder flushed;</item>
/// <item>the <c>latest</c> pointer is replaced by a file rename, then the folder moved aside is deleted.</item>
/// </list>
/// A crash between moving the old folder aside and moving the new one in leaves <c>latest</c> naming a missing
/// folder and the old one aside: <see cref="Latest"/> moves it back.
/// </summary>
public sealed class CheckpointStore(string runDirectory, int keepLast = 3)
{
    private const string LatestFile = "latest";

    /// <summary>Folder holding step-NNNNNN checkpoints.</summary>
    public string Root { get; } = Path.Combine(runDirectory, "checkpoints");

    /// <summary>Test hook: runs after an existing checkpoint of the step was moved aside, before the new one moves in.</summary>
    internal Action? AfterPreviousMovedAside { get; set; }

    /// <summary>Test hook: the free bytes of the file system of a folder (null: the file system's own answer).</summary>
    internal Func<string, long>? FreeBytesOverride { get; set; }

    /// <summary>
    /// Bytes free to this process on the file system that holds the checkpoints; <see cref="long.MaxValue"/> when the file
    /// system does not say (a checkpoint is then not refused for want of room: the write itself would report a full disk).
    /// </summary>
    public long FreeBytes()
    {
        // The nearest folder that exists (the checkpoints folder is made at the first save).
        string folder = Path.GetFullPath(Root);
        while (!Directory.Exists(folder) && Path.GetDirectoryName(folder) is { } parent) folder = parent;
        if (FreeBytesOverride is { } free) return free(folder);
        try
        {
            return new DriveInfo(folder).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return long.MaxValue;
        }
    }

    /// <summary>
    /// Refuses a checkpoint of <paramref name="bytes"/> that the file system has no room for, before anything is written:
    /// a clear error at once rather than a full disk minutes into a 90 GB write (which would leave nothing behind either,
    /// but only after it).
    /// </summary>
    /// <exception cref="IOException">Less than <paramref name="bytes"/> free; the message names the folder, both sizes and the setting that helps.</exception>
    public void RequireSpace(long bytes, int step)
    {
        long free = FreeBytes();
        if (free < bytes)
            throw new IOException($"{Root}: the checkpoint of update {step} needs {Gb(bytes)} and the file system has {Gb(free)} free; " +
                                  $"free some space or keep fewer checkpoints (keep_checkpoints, now {keepLast})");
    }

    /// <summary>A note when the file system cannot hold the checkpoints a run keeps (one more while the newest is written), else null.</summary>
    public string? SpaceNote(long bytesPerCheckpoint)
    {
        long kept = keepLast <= 0 ? 2 : keepLast + 1;
        long free = FreeBytes();
        return free >= kept * bytesPerCheckpoint ? null
            : $"note: each checkpoint of this run takes about {Gb(bytesPerCheckpoint)} and {Root} has {Gb(free)} free, less than the " +
              $"{kept} it holds at once ({(keepLast <= 0 ? "all kept, keep_checkpoints 0" : $"keep_checkpoints {keepLast}, and the one being written")}); " +
              "a checkpoint that does not fit stops the run";
    }

    private static string Gb(long bytes) => $"{bytes / 1e9:F1} GB";

    /// <summary>Folder name of the checkpoint of <paramref name="step"/>.</summary>
    public static string Name(int step) => "step-" + step.ToString("D6", CultureInfo.InvariantCulture);

    /// <summary>Writes a checkpoint for <paramref name="step"/> by calling <paramref name="write"/> on an empty folder.</summary>
    public string Save(int step, Action<string> write)
    {
        Directory.CreateDirectory(Root);
        string final = Path.Combine(Root, Name(step));
        string aside = AsidePath(step);
        string temp = Path.Combine(Root, $".{Name(step)}.{Environment.ProcessId}.tmp");
        if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        Directory.CreateDirectory(temp);
        try
        {
            write(temp);
            DurableFiles.FlushTree(temp);
        }
        catch
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            throw;
        }

        RestoreAside(step);
        if (Directory.Exists(aside)) Directory.Delete(aside, recursive: true);
        if (Directory.Exists(final)) Directory.Move(final, aside);
        AfterPreviousMovedAside?.Invoke();
        Directory.Move(temp, final);
        DurableFiles.FlushDirectory(Root);

        string pointerTemp = Path.Combine(Root, $".{LatestFile}.{Environment.ProcessId}.tmp");
        using (var pointer = new FileStream(pointerTemp, FileMode.Create, FileAccess.Write))
        {
            pointer.Write(System.Text.Encoding.UTF8.GetBytes(Name(step)));
            pointer.Flush(flushToDisk: true);
        }
        File.Move(pointerTemp, Path.Combine(Root, LatestFile), overwrite: true);
        DurableFiles.FlushDirectory(Root);
        if (Directory.Exists(aside)) Directory.Delete(aside, recursive: true);
        Prune(step);
        return final;
    }

    /// <summary>The newest complete checkpoint folder, or null when the run has none (restores one a crash left aside).</summary>
    public string? Latest()
    {
        string pointer = Path.Combine(Root, LatestFile);
        if (!File.Exists(pointer)) return null;
        string name = File.ReadAllText(pointer).Trim();
        if (!name.StartsWith("step-", StringComparison.Ordinal)
            || !int.TryParse(name["step-".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int step)) return null;
        RestoreAside(step);
        string path = Path.Combine(Root, name);
        return Directory.Exists(path) ? path : null;
    }

    private string AsidePath(int step) => Path.Combine(Root, $".{Name(step)}.previous");

    /// <summary>When a crash left a step's checkpoint aside and none in place, moves it back.</summary>
    private void RestoreAside(int step)
    {
        string final = Path.Combine(Root, Name(step)), aside = AsidePath(step);
        if (Directory.Exists(aside) && !Directory.Exists(final))
        {
            Directory.Move(aside, final);
            DurableFiles.FlushDirectory(Root);
        }
    }

    /// <summary>
    /// Deletes all but the newest <c>keepLast</c> checkpoints (never the one just written), and the temporary folders
    /// of writers that died.
    /// </summary>
    private void Prune(int newest)
    {
        var old = Directory.GetDirectories(Root, "step-*")
            .Select(d => (Path: d, Step: int.TryParse(Path.GetFileName(d)["step-".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int s) ? s : -1))
            .Where(d => d.Step >= 0 && d.Step != newest)
            .OrderByDescending(d => d.Step)
            .Skip(keepLast <= 0 ? int.MaxValue : keepLast - 1);
        foreach (var (path, _) in old) Directory.Delete(path, recursive: true);
        // Temporary folders of writers that crashed (their process is gone) are never going to be completed.
        foreach (string temp in Directory.GetDirectories(Root, ".step-*.tmp"))
        {
            string[] parts = Path.GetFileName(temp).Split('.');
            if (parts.Length >= 3 && int.TryParse(parts[^2], NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && pid != Environment.ProcessId && !IsRunning(pid))
                Directory.Delete(temp, recursive: true);
        }
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}

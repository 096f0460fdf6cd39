using System.Runtime.InteropServices;

namespace OR1.Grpo.Checkpoints;

/// <summary>
/// Forces written files and folder entries to stable storage before a rename makes them current, so that a power
/// loss cannot leave a renamed-into-place checkpoint with empty files (rename is atomic; the data behind it is
/// only durable once flushed). .NET flushes a file with FileStream.Flush(true); it has no call for a directory, so
/// the folder is opened and fsync'ed through libc (Linux; elsewhere the directory flush is skipped).
/// </summary>
internal static partial class DurableFiles
{
    /// <summary>Flushes every file below <paramref name="folder"/>, then every folder from the deepest up.</summary>
    public static void FlushTree(string folder)
    {
        foreach (string file in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories))
        {
            using var stream = new FileStream(file, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
            stream.Flush(flushToDisk: true);
        }
        foreach (string sub in Directory.EnumerateDirectories(folder, "*", SearchOption.AllDirectories).OrderByDescending(d => d.Length))
            FlushDirectory(sub);
        FlushDirectory(folder);
    }

    /// <summary>Makes the entries of <paramref name="folder"/> (created, renamed, deleted names) durable.</summary>
    public static void FlushDirectory(string folder)
    {
        if (!OperatingSystem.IsLinux()) return;
        int fd = Open(folder, ReadOnly | OpenDirectory);
        if (fd < 0) throw new IOException($"{folder}: cannot be opened to flush it (errno {Marshal.GetLastPInvokeError()})");
        try
        {
            if (Fsync(fd) != 0) throw new IOException($"{folder}: fsync failed (errno {Marshal.GetLastPInvokeError()})");
        }
        finally
        {
            _ = Close(fd);
        }
    }

    private const int ReadOnly = 0, OpenDirectory = 0x10000; // O_RDONLY, O_DIRECTORY (Linux x64 and arm64)

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}

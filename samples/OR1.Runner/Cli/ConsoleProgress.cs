namespace OR1.Runner.Cli;

/// <summary>
/// Progress written synchronously to stderr on one line (System.Progress posts to the thread pool, so
/// its reports arrive out of order).
/// </summary>
public sealed class ConsoleProgress(string label, int total) : IProgress<int>
{
    private readonly object _lock = new();

    public void Report(int value)
    {
        lock (_lock) Console.Error.Write($"\r{label}: {value}/{total}");
    }
}

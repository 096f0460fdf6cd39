namespace OR1.Model;

/// <summary>
/// An <see cref="IProgress{T}"/> that calls its handler on the reporting thread, in order. System.Progress posts
/// each report to the thread pool (or a captured context), so reports of a tight loop arrive late and out of order.
/// </summary>
public sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}

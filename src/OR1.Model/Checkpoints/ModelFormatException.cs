namespace OR1.Model.Checkpoints;

/// <summary>
/// A model file (config.json, a safetensors file, a shard index) is missing, unreadable or does not
/// follow its format. The message always starts with the file's path, then says what is wrong and,
/// where it applies, which field or tensor.
/// </summary>
public sealed class ModelFormatException : Exception
{
    /// <summary>Creates the exception for <paramref name="filePath"/> with a description of the problem.</summary>
    /// <param name="filePath">The file (or, for a missing checkpoint, the directory) the problem is in.</param>
    /// <param name="problem">What is wrong, naming the field or tensor where there is one.</param>
    /// <param name="innerException">The underlying error, if any (a JSON or I/O exception).</param>
    public ModelFormatException(string filePath, string problem, Exception? innerException = null)
        : base($"{filePath}: {problem}", innerException)
    {
        FilePath = filePath;
        Problem = problem;
    }

    /// <summary>The file (or directory) the problem is in.</summary>
    public string FilePath { get; }

    /// <summary>The problem without the file name prefix.</summary>
    public string Problem { get; }
}

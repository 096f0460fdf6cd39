namespace OR1.Grpo.Data;

/// <summary>A dataset file that cannot be read at all: an unsupported extension, a .parquet file that is not
/// parquet, or a parquet file the library cannot decode. The message names the file.</summary>
public sealed class DatasetFormatException : Exception
{
    /// <summary>An error about <paramref name="filePath"/>.</summary>
    public DatasetFormatException(string filePath, string message, Exception? inner = null)
        : base(message, inner) => FilePath = filePath;

    /// <summary>The file the error is about.</summary>
    public string FilePath { get; }
}

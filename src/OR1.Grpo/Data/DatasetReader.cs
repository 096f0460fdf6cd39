using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Parquet;
using Parquet.Serialization;

namespace OR1.Grpo.Data;

/// <summary>
/// Reads RL data files in the Skywork-OR1-RL-Data schema: <c>.parquet</c> (nested columns: prompt a list of
/// {content, role}, reward_model {ground_truth, style}, extra_info {index, model_difficulty {...}, split}) and
/// <c>.jsonl</c> (one JSON object per line with the same fields). A bad row is skipped and recorded in the
/// <see cref="DataLoadReport"/>; only a file that cannot be read at all throws.
/// </summary>
public static class DatasetReader
{
    private static readonly byte[] ParquetMagic = "PAR1"u8.ToArray();

    /// <summary>Reads one file (chosen by its extension, case-insensitive).</summary>
    /// <exception cref="FileNotFoundException">the file does not exist.</exception>
    /// <exception cref="DatasetFormatException">an extension other than .parquet and .jsonl, or a .parquet file
    /// that is not parquet (no PAR1 magic) or cannot be decoded.</exception>
    public static IReadOnlyList<RlExample> Read(string path, DataLoadReport report)
        // Parquet.Net is asynchronous only; run it on the pool so a caller's synchronization context cannot deadlock.
        => Task.Run(() => ReadAsync(path, report)).GetAwaiter().GetResult();

    /// <summary>Reads several files in order into one list (see <see cref="Read"/>).</summary>
    public static IReadOnlyList<RlExample> ReadAll(IEnumerable<string> paths, DataLoadReport report)
    {
        ArgumentNullException.ThrowIfNull(paths);
        var all = new List<RlExample>();
        foreach (var path in paths) all.AddRange(Read(path, report));
        return all;
    }

    /// <summary>Reads one file (see <see cref="Read"/>).</summary>
    public static async Task<IReadOnlyList<RlExample>> ReadAsync(string path, DataLoadReport report, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(report);
        string extension = Path.GetExtension(path).ToLowerInvariant();
        if (extension != ".parquet" && extension != ".jsonl")
        {
            throw new DatasetFormatException(path, $"cannot read dataset file '{path}': unsupported extension '{extension}' (expected .parquet or .jsonl)");
        }
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"dataset file not found: '{path}'", path);
        }
        return extension == ".parquet"
            ? await ReadParquetAsync(path, report, cancellationToken).ConfigureAwait(false)
            : ReadJsonLines(path, report, cancellationToken);
    }

    private static List<RlExample> ReadJsonLines(string path, DataLoadReport report, CancellationToken cancellationToken)
    {
        var examples = new List<RlExample>();
        long lineNumber = 0;
        foreach (string line in File.ReadLines(path, Encoding.UTF8))
        {
            cancellationToken.ThrowIfCancellationRequested();
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonNode? node;
            string? parseError = null;
            try
            {
                node = JsonNode.Parse(line);
            }
            catch (JsonException e)
            {
                node = null;
                parseError = $"not valid JSON ({e.Message})";
            }
            if (node is not JsonObject row)
            {
                report.RecordSkip(new SkippedRow(path, lineNumber, null, SkipReason.MalformedRow, parseError ?? "the line is not a JSON object"));
                report.RecordRow(accepted: false);
                continue;
            }
            var example = RowParser.Parse(row, path, lineNumber, report);
            if (example is not null) examples.Add(example);
        }
        return examples;
    }

    private static async Task<List<RlExample>> ReadParquetAsync(string path, DataLoadReport report, CancellationToken cancellationToken)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: false);
        CheckParquetMagic(path, stream);

        int rowGroups;
        try
        {
            await using var reader = await ParquetReader.CreateAsync(stream, leaveStreamOpen: true, cancellationToken: cancellationToken).ConfigureAwait(false);
            rowGroups = reader.RowGroupCount;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new DatasetFormatException(path, $"cannot read parquet file '{path}': {e.Message}", e);
        }

        var examples = new List<RlExample>();
        long rowNumber = 0;
        // One row group at a time, so a large training file is never held twice in memory.
        for (int group = 0; group < rowGroups; group++)
        {
            IList<Dictionary<string, object>> rows;
            try
            {
                stream.Position = 0;
                var result = await ParquetSerializer.DeserializeUntypedAsync(stream, null, group, cancellationToken).ConfigureAwait(false);
                rows = result.Data;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new DatasetFormatException(path, $"cannot read row group {group} of parquet file '{path}': {e.Message}", e);
            }
            foreach (var row in rows)
            {
                rowNumber++;
                var example = RowParser.Parse(ToJsonObject(row), path, rowNumber, report);
                if (example is not null) examples.Add(example);
            }
        }
        return examples;
    }

    /// <summary>A parquet file starts and ends with "PAR1"; anything else is refused before the library sees it.</summary>
    private static void CheckParquetMagic(string path, FileStream stream)
    {
        long length = stream.Length;
        bool ok = length >= 12;
        if (ok)
        {
            Span<byte> head = stackalloc byte[4];
            Span<byte> tail = stackalloc byte[4];
            stream.Position = 0;
            stream.ReadExactly(head);
            stream.Position = length - 4;
            stream.ReadExactly(tail);
            ok = head.SequenceEqual(ParquetMagic) && tail.SequenceEqual(ParquetMagic);
        }
        stream.Position = 0;
        if (!ok)
        {
            throw new DatasetFormatException(path, $"'{path}' is not a parquet file: it does not start and end with the PAR1 magic ({length} bytes)");
        }
    }

    /// <summary>An untyped parquet row (dictionaries, lists, CLR scalars) as a JSON object; nulls stay null.</summary>
    private static JsonObject ToJsonObject(IDictionary<string, object> row)
    {
        var obj = new JsonObject();
        foreach (var (key, value) in row) obj[key] = ToJsonNode(value);
        return obj;
    }

    private static JsonNode? ToJsonNode(object? value) => value switch
    {
        null => null,
        string s => JsonValue.Create(s),
        ReadOnlyMemory<char> chars => JsonValue.Create(chars.ToString()),
        byte[] bytes => JsonValue.Create(Encoding.UTF8.GetString(bytes)),
        ReadOnlyMemory<byte> bytes => JsonValue.Create(Encoding.UTF8.GetString(bytes.Span)),
        bool b => JsonValue.Create(b),
        sbyte or byte or short or ushort or int or uint or long => JsonValue.Create(Convert.ToInt64(value, CultureInfo.InvariantCulture)),
        ulong u => JsonValue.Create(u),
        float f => JsonValue.Create((double)f),
        double d => JsonValue.Create(d),
        decimal m => JsonValue.Create(m),
        IDictionary<string, object> dict => ToJsonObject(dict),
        IEnumerable list => ToJsonArray(list),
        _ => JsonValue.Create(Convert.ToString(value, CultureInfo.InvariantCulture)),
    };

    private static JsonArray ToJsonArray(IEnumerable items)
    {
        var array = new JsonArray();
        foreach (var item in items) array.Add(ToJsonNode(item));
        return array;
    }
}

using System.Globalization;
using System.Text;

namespace OR1.Grpo.Data;

/// <summary>Why a row or an example was left out of the data.</summary>
public enum SkipReason
{
    /// <summary>A JSONL line that is not a JSON object.</summary>
    MalformedRow,

    /// <summary>No data_source string.</summary>
    MissingDataSource,

    /// <summary>No prompt (absent or null).</summary>
    MissingPrompt,

    /// <summary>A prompt list with no messages, or whose messages are all blank.</summary>
    EmptyPrompt,

    /// <summary>A prompt message without a role or a content string.</summary>
    BadPromptMessage,

    /// <summary>An ability other than "math" or "code".</summary>
    UnknownAbility,

    /// <summary>No reward_model.ground_truth.</summary>
    MissingGroundTruth,

    /// <summary>A ground truth that does not decode for the row's ability.</summary>
    UndecodableGroundTruth,

    /// <summary>extra_info present but with an index, model_difficulty or split of the wrong type.</summary>
    BadExtraInfo,

    /// <summary>Difficulty filter: the example has no model_difficulty entry for the base model.</summary>
    NoDifficultyForModel,

    /// <summary>Difficulty filter: model_difficulty[base] outside the kept range (1..15 by default).</summary>
    DifficultyOutOfRange,

    /// <summary>Length filter: the templated prompt has more tokens than the maximum prompt length.</summary>
    PromptTooLong,
}

/// <summary>One left-out row, kept for logging.</summary>
/// <param name="File">The file it came from, or null for examples dropped by a filter after loading.</param>
/// <param name="Row">1-based position in the file (the line number in JSONL, the row number in parquet), or null.</param>
/// <param name="ExampleId">The example's <see cref="RlExample.Id"/> where one exists (filters), otherwise null.</param>
/// <param name="Reason">The category.</param>
/// <param name="Detail">The specific cause, in words.</param>
public sealed record SkippedRow(string? File, long? Row, string? ExampleId, SkipReason Reason, string Detail)
{
    /// <inheritdoc />
    public override string ToString()
    {
        string where = File is null ? ExampleId ?? "(example)" : Row is null ? File : $"{File} row {Row.Value.ToString(CultureInfo.InvariantCulture)}";
        return $"{where}: {Reason}: {Detail}";
    }
}

/// <summary>
/// What loading the data did: rows read and accepted, rows and examples left out per <see cref="SkipReason"/>,
/// and the first few left-out rows with their causes. One report can collect several files and the filters
/// applied after them. Thread-safe.
/// </summary>
public sealed class DataLoadReport
{
    private readonly object _lock = new();
    private readonly Dictionary<SkipReason, long> _counts = new();
    private readonly List<SkippedRow> _samples = new();
    private long _rowsRead;
    private long _rowsAccepted;

    /// <summary>A report that keeps the first <paramref name="maxSamples"/> left-out rows (all of them are counted).</summary>
    public DataLoadReport(int maxSamples = 10)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxSamples);
        MaxSamples = maxSamples;
    }

    /// <summary>How many left-out rows are kept in <see cref="Samples"/>.</summary>
    public int MaxSamples { get; }

    /// <summary>Rows the readers saw (blank JSONL lines are not rows).</summary>
    public long RowsRead { get { lock (_lock) return _rowsRead; } }

    /// <summary>Rows the readers turned into examples.</summary>
    public long RowsAccepted { get { lock (_lock) return _rowsAccepted; } }

    /// <summary>Rows and examples left out, all reasons together (readers and filters).</summary>
    public long TotalSkipped { get { lock (_lock) return _counts.Values.Sum(); } }

    /// <summary>The count for each reason that occurred.</summary>
    public IReadOnlyDictionary<SkipReason, long> SkippedByReason
    {
        get { lock (_lock) return new Dictionary<SkipReason, long>(_counts); }
    }

    /// <summary>The first <see cref="MaxSamples"/> left-out rows, in the order they were met.</summary>
    public IReadOnlyList<SkippedRow> Samples
    {
        get { lock (_lock) return _samples.ToArray(); }
    }

    /// <summary>How many rows or examples were left out for <paramref name="reason"/>.</summary>
    public long Count(SkipReason reason)
    {
        lock (_lock) return _counts.GetValueOrDefault(reason);
    }

    /// <summary>Counts one row seen by a reader; <paramref name="accepted"/> when it became an example.</summary>
    public void RecordRow(bool accepted)
    {
        lock (_lock)
        {
            _rowsRead++;
            if (accepted) _rowsAccepted++;
        }
    }

    /// <summary>Counts one left-out row or example, keeping it as a sample while fewer than <see cref="MaxSamples"/> are kept.</summary>
    public void RecordSkip(SkippedRow skipped)
    {
        ArgumentNullException.ThrowIfNull(skipped);
        lock (_lock)
        {
            _counts[skipped.Reason] = _counts.GetValueOrDefault(skipped.Reason) + 1;
            if (_samples.Count < MaxSamples) _samples.Add(skipped);
        }
    }

    /// <summary>A few lines for the log: totals, counts per reason, then the kept samples.</summary>
    public string Summary()
    {
        lock (_lock)
        {
            var text = new StringBuilder();
            text.Append(CultureInfo.InvariantCulture, $"rows read {_rowsRead}, accepted {_rowsAccepted}, left out {_counts.Values.Sum()}");
            foreach (var (reason, count) in _counts.OrderBy(p => p.Key))
            {
                text.Append(CultureInfo.InvariantCulture, $"{Environment.NewLine}  {reason}: {count}");
            }
            foreach (var sample in _samples) text.Append(Environment.NewLine).Append("  - ").Append(sample);
            return text.ToString();
        }
    }

    /// <inheritdoc />
    public override string ToString() => Summary();
}

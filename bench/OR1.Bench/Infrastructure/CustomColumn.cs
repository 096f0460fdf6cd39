using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace OR1.Bench;

/// <summary>
/// The IColumn boilerplate every custom numeric column shares (always shown, custom category,
/// dimensionless); a column supplies its name, legend and the value of one case.
/// </summary>
public abstract class CustomColumn(string columnName, string legend, int priority) : IColumn
{
    public string Id => GetType().Name;
    public string ColumnName => columnName;
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => priority;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => legend;
    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => Value(summary, benchmarkCase);
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => Value(summary, benchmarkCase);

    /// <summary>The cell of <paramref name="benchmarkCase"/>, or "-" when it cannot be computed.</summary>
    protected abstract string Value(Summary summary, BenchmarkCase benchmarkCase);
}

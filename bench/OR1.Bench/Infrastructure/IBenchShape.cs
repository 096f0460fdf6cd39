namespace OR1.Bench;

/// <summary>A named shape of a benchmark case: a model's widths or a rollout batch.</summary>
public interface IBenchShape
{
    /// <summary>Shown in the case name ("backend/name") and matched by --shapes.</summary>
    string Name { get; }

    /// <summary>Whether this is one of the odd shapes ("odd", "odd-tiny"): their token counts are made odd too.</summary>
    bool IsOdd => Name.StartsWith("odd", StringComparison.Ordinal);
}

using OR1.Native;

namespace OR1.Bench;

/// <summary>
/// Which backends and shapes the kernel benchmarks enumerate: every backend that starts on this machine
/// and every shape, unless --backends / --shapes narrowed them (comma-separated; shapes match by
/// case-insensitive substring, so "7b,odd" picks Qwen2.5-7B, OR1-7B and the odd shapes).
/// </summary>
public static class BenchSelection
{
    private static IReadOnlyList<string>? s_available;
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, BackendFacts?> s_facts = new();

    private static IReadOnlyList<string>? s_backendFilter;

    /// <summary>Backend names to try, in <see cref="Backends.Names"/> order; null: all of them.</summary>
    public static IReadOnlyList<string>? BackendFilter
    {
        get => s_backendFilter;
        set
        {
            s_backendFilter = value;
            s_available = null;
        }
    }

    /// <summary>Shape-name fragments to keep; null: all shapes.</summary>
    public static IReadOnlyList<string>? ShapeFilter { get; set; }

    /// <summary>The selected backends that can start here (each is started once, then cached).</summary>
    public static IReadOnlyList<string> AvailableBackends()
    {
        if (s_available is not null) return s_available;
        if (BackendFilter is { } filter)
            foreach (var name in filter)
                if (!Backends.Names.Contains(name))
                    throw new ArgumentException($"--backends: '{name}' is not a backend; known: {string.Join(", ", Backends.Names)}");
        var chosen = Backends.Names.Where(n => BackendFilter is null || BackendFilter.Contains(n)).ToList();
        var available = chosen.Where(n => Description(n) is not null).ToList();
        foreach (var missing in chosen.Except(available))
            Console.WriteLine($"// backend {missing} cannot start on this machine; its cases are left out");
        return s_available = available;
    }

    /// <summary>
    /// The <see cref="IBackend.Description"/> of <paramref name="backend"/> (device name, threads), or null
    /// when it cannot start here. Each backend is started once per process: starting a GPU backend costs a
    /// device context, and both the case list and the peak columns need to know.
    /// </summary>
    public static string? Description(string backend) => Facts(backend)?.Description;

    /// <summary>The tensor dtypes <paramref name="backend"/> stores (<see cref="IBackend.StorageTypes"/>); empty when it cannot start.</summary>
    public static IReadOnlyList<DType> StorageTypes(string backend) => Facts(backend)?.StorageTypes ?? [];

    private sealed record BackendFacts(string Description, IReadOnlyList<DType> StorageTypes);

    private static BackendFacts? Facts(string backend) => s_facts.GetOrAdd(backend, static name =>
    {
        try
        {
            using var started = Backends.Create(name);
            return new BackendFacts(started.Description, started.StorageTypes.ToArray());
        }
        catch (BackendUnavailableException)
        {
            return null;
        }
    });

    /// <summary>Whether a shape called <paramref name="name"/> passes the --shapes filter.</summary>
    public static bool KeepsShape(string name) =>
        ShapeFilter is null || ShapeFilter.Any(f => name.Contains(f, StringComparison.OrdinalIgnoreCase));

    /// <summary>Reads --backends a,b and --shapes x,y out of <paramref name="args"/>; returns the rest for BenchmarkDotNet.</summary>
    public static string[] Parse(string[] args)
    {
        var rest = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] is "--backends" or "--shapes")
            {
                if (i + 1 >= args.Length) throw new ArgumentException($"{args[i]} needs a comma-separated list");
                var values = args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                if (args[i - 1] == "--backends") BackendFilter = values.Select(v => v.ToLowerInvariant()).ToArray();
                else ShapeFilter = values;
            }
            else rest.Add(args[i]);
        }
        return rest.ToArray();
    }
}

using OR1.Native;
using OR1.Native.Cpu;

namespace OR1.Runner;

/// <summary>
/// The <c>or1</c> command. Today it reports what exists; the bundled sample run (supervised warm-up,
/// MAGIC training, before/after avg@8) arrives with the sample issue and replaces the placeholder below.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        string command = args.Length > 0 ? args[0] : "help";
        switch (command)
        {
            case "sample":
                return SamplePlaceholder();
            case "info":
                return Info();
            case "help" or "--help" or "-h":
                PrintHelp();
                return 0;
            default:
                Console.Error.WriteLine($"or1: unknown command '{command}'.");
                PrintHelp();
                return 2;
        }
    }

    private static void PrintHelp()
    {
        Console.WriteLine("""
            or1 — GRPO/MAGIC training of reasoning models, from hand-written kernels

            Commands available now:
              or1 sample   the bundled sample run (not yet built: prints what exists)
              or1 info     the backends this machine can run and a kernel self-check
            """);
    }

    private static int SamplePlaceholder()
    {
        Console.WriteLine("The bundled sample (warm-up + MAGIC training of a small model on synthetic arithmetic) is not built yet.");
        Console.WriteLine("What exists today: the op contract and the complete Cpu backend, checked by the test suite.");
        Console.WriteLine();
        return Info();
    }

    private static int Info()
    {
        using var backend = new CpuBackend();
        Console.WriteLine($"Backend: {backend.Description}");
        // A visible end-to-end check of a few ops: GRPO advantages of one group and RMSNorm of one row.
        using var rewards = backend.Allocate(DType.Float32, new TensorShape(4), "rewards");
        using var advantages = backend.Allocate(DType.Float32, new TensorShape(4), "advantages");
        using var groups = Segments.FromLengths(backend, [4]);
        backend.Upload<float>([1f, 0f, 1f, 1f], rewards);
        backend.GrpoAdvantages(rewards, groups, 1e-6f, advantages);
        var result = new float[4];
        backend.Download<float>(advantages, result);
        Console.WriteLine($"GRPO advantages of rewards [1, 0, 1, 1]: [{string.Join(", ", result.Select(a => a.ToString("F4", System.Globalization.CultureInfo.InvariantCulture)))}]");
        return 0;
    }
}

using System.CommandLine;

namespace OR1.Runner.Commands;

/// <summary>
/// <c>or1 sample</c>: the bundled end-to-end run (supervised warm-up, MAGIC training, before/after
/// avg@8). Until the sample is built it says so and shows what exists.
/// </summary>
public static class SampleCommand
{
    public static Command Create()
    {
        var command = new Command("sample", "The bundled sample run (not built yet: prints what exists)");
        command.SetAction(_ =>
        {
            Console.WriteLine("The bundled sample (warm-up + MAGIC training of a small model on synthetic arithmetic) is not built yet.");
            Console.WriteLine("What exists: the op contract with a complete Cpu backend; the Qwen2 model (HF checkpoints, tokenizer,");
            Console.WriteLine("forward/backward, KV-cache generation); the commands `or1 logprobs` and `or1 generate`.");
            Console.WriteLine();
            return InfoCommand.Run("cpu");
        });
        return command;
    }
}

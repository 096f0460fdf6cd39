using OR1.Runner;

namespace OR1.Tests.Runner;

/// <summary>
/// --debug-sync is accepted by every command (a recursive option of the root) and reaches the kernel backend the
/// command creates: or1 info on the emulator reports it on, and without the option it stays off.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class DebugSyncOptionTests
{
    private static (int Code, string Output) RunOr1(params string[] args)
    {
        var saved = Console.Out;
        var captured = new StringWriter();
        Console.SetOut(captured);
        try
        {
            return (Program.Main(args), captured.ToString());
        }
        finally
        {
            Console.SetOut(saved);
        }
    }

    [Test]
    public void TheOptionTurnsDebugSyncOnForTheCommandsBackend()
    {
        string? saved = Environment.GetEnvironmentVariable("OR1_DEBUG_SYNC");
        try
        {
            Environment.SetEnvironmentVariable("OR1_DEBUG_SYNC", null);
            var (offCode, off) = RunOr1("info", "--device", "emu");
            if (off.Contains("libor1_emu", StringComparison.Ordinal) && Environment.GetEnvironmentVariable("OR1_REQUIRE_EMU") != "1" && offCode != 0)
                Assert.Ignore("the emulator library is not built here");
            Assert.That(offCode, Is.Zero, off);
            Assert.That(off, Does.Contain("debug sync off"));
            Assert.That(off, Does.Match(@"Device work for that check: \d+ launches"));

            var (onCode, on) = RunOr1("info", "--device", "emu", "--debug-sync");
            Assert.That(onCode, Is.Zero, on);
            Assert.That(on, Does.Contain("debug sync on"));
        }
        finally
        {
            Environment.SetEnvironmentVariable("OR1_DEBUG_SYNC", saved);
        }
    }
}

using OR1.Native;

namespace OR1.Tests.Support;

/// <summary>
/// Opens something that needs the emulator library (libor1_emu, built by CMake): without it the test is ignored with
/// the reason, unless OR1_REQUIRE_EMU=1 (CI), where a missing library fails the test instead of skipping it.
/// </summary>
public static class EmuOrIgnore
{
    public static T Open<T>(Func<T> open)
    {
        try
        {
            return open();
        }
        catch (BackendUnavailableException e)
        {
            if (Environment.GetEnvironmentVariable("OR1_REQUIRE_EMU") == "1") Assert.Fail(e.Message);
            Assert.Ignore(e.Message);
            throw; // unreachable: Assert.Ignore throws
        }
    }
}

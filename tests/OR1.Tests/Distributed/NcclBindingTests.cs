using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using OR1.Native.Distributed;
using OR1.Tests.Support;

namespace OR1.Tests.Distributed;

/// <summary>
/// The NCCL binding against nccl.h where no GPU is needed: ncclCommInitRank takes its 128-byte ncclUniqueId by value.
/// A library with that prototype, compiled here by g++, receives our declaration's arguments and reports what it got:
/// the id's bytes, the world size and the rank (a pointer in the id's place, as the binding had it, hands the callee the
/// pointer as the rank and stack garbage as the id).
/// </summary>
[TestFixture]
public sealed class NcclBindingTests
{
    private const string FakeNccl = """
        #include <string.h>
        typedef struct { char internal[128]; } ncclUniqueId;
        // Writes back what arrived: the id's bytes, then the world size and the rank.
        extern "C" int ncclCommInitRank(void** comm, int nranks, ncclUniqueId id, int rank) {
            int* seen = (int*)*comm;
            memcpy(seen, id.internal, 128);
            seen[32] = nranks;
            seen[33] = rank;
            return 7;
        }
        """;

    [Test]
    public async Task CommInitRankPassesTheUniqueIdByValueAsNcclHDeclaresIt()
    {
        // The declaration itself: (ncclComm_t*, int, ncclUniqueId by value, int).
        var method = typeof(NcclNative).GetMethod(nameof(NcclNative.CommInitRank), BindingFlags.Public | BindingFlags.Static)!;
        Assert.That(method.GetParameters().Select(p => p.ParameterType),
            Is.EqualTo(new[] { typeof(nint).MakePointerType(), typeof(int), typeof(NcclNative.UniqueId), typeof(int) }));
        Assert.That(Unsafe.SizeOf<NcclNative.UniqueId>(), Is.EqualTo(128));

        string dir = Path.Combine(Path.GetTempPath(), "or1-fake-nccl-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string source = Path.Combine(dir, "fake_nccl.cpp"), library = Path.Combine(dir, "libfake_nccl.so");
            await File.WriteAllTextAsync(source, FakeNccl);
            var (exit, _, error) = await CompileOrIgnore(source, library);
            Assert.That(exit, Is.Zero, error);
            var (rc, bytes, ranks, rank) = CallThroughTheDeclaredTypes(library);
            Assert.That(rc, Is.EqualTo(7));
            Assert.That(bytes, Is.EqualTo(Enumerable.Range(0, 128).Select(i => (byte)(i * 7 + 3)).ToArray()), "the id's bytes");
            Assert.That((ranks, rank), Is.EqualTo((5, 3)), "world size and rank");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>The fake's ncclCommInitRank called with the LibraryImport's parameter types, through the C convention.</summary>
    private static unsafe (int Rc, byte[] Id, int Ranks, int Rank) CallThroughTheDeclaredTypes(string library)
    {
        nint handle = NativeLibrary.Load(library);
        try
        {
            var initRank = (delegate* unmanaged<nint*, int, NcclNative.UniqueId, int, int>)NativeLibrary.GetExport(handle, "ncclCommInitRank");
            var id = new NcclNative.UniqueId();
            for (int i = 0; i < 128; i++) id.Bytes[i] = (byte)(i * 7 + 3);
            int* seen = stackalloc int[34];
            nint comm = (nint)seen;
            int rc = initRank(&comm, 5, id, 3);
            return (rc, new ReadOnlySpan<byte>(seen, 128).ToArray(), seen[32], seen[33]);
        }
        finally
        {
            NativeLibrary.Free(handle);
        }
    }

    private static async Task<(int Exit, string Output, string Error)> CompileOrIgnore(string source, string library)
    {
        try
        {
            return await ChildProcess.RunAsync("g++", ["-shared", "-fPIC", "-O1", "-o", library, source], TimeSpan.FromMinutes(2));
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Assert.Ignore($"g++ is not installed ({e.Message}): the emulator needs it too (apt-get install g++)");
            throw;
        }
    }
}

using OR1.Grpo.Checkpoints;

namespace OR1.Tests.Checkpoints;

/// <summary>
/// CheckpointStore never loses the checkpoint <c>latest</c> names: not when a writer fails halfway, not when a re-save
/// of the same step crashes between moving the old folder aside and moving the new one in.
/// </summary>
public sealed class CheckpointStoreTests
{
    private string _run = "";

    [SetUp]
    public void CreateRun()
    {
        _run = Path.Combine(Path.GetTempPath(), "or1-checkpoints-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_run);
    }

    [TearDown]
    public void DeleteRun()
    {
        if (Directory.Exists(_run)) Directory.Delete(_run, recursive: true);
    }

    private static Action<string> Writes(string content) => dir =>
    {
        File.WriteAllText(Path.Combine(dir, "weights.bin"), content);
        Directory.CreateDirectory(Path.Combine(dir, "nested"));
        File.WriteAllText(Path.Combine(dir, "nested", "state.json"), content + "-state");
    };

    private static string Content(string checkpoint) => File.ReadAllText(Path.Combine(checkpoint, "weights.bin"));

    private string[] Leftovers(CheckpointStore store) =>
        Directory.GetFileSystemEntries(store.Root).Select(Path.GetFileName).Where(n => n!.StartsWith('.')).ToArray()!;

    [Test]
    public void ResaveOfTheSameStep_ReplacesItsContents_AndLeavesNothingBehind()
    {
        var store = new CheckpointStore(_run);
        store.Save(5, Writes("old"));
        string path = store.Save(5, Writes("new"));
        Assert.That(store.Latest(), Is.EqualTo(path));
        Assert.That(Content(path), Is.EqualTo("new"));
        Assert.That(File.ReadAllText(Path.Combine(path, "nested", "state.json")), Is.EqualTo("new-state"));
        Assert.That(Leftovers(store), Is.Empty);
    }

    [Test]
    public void WriterFailingHalfway_KeepsThePreviousCheckpointAndPointer()
    {
        var store = new CheckpointStore(_run);
        string previous = store.Save(5, Writes("good"));
        var failure = Assert.Throws<IOException>(() => store.Save(5, dir =>
        {
            File.WriteAllText(Path.Combine(dir, "weights.bin"), "half");
            throw new IOException("disk full (simulated)");
        }));
        Assert.That(failure!.Message, Does.Contain("simulated"));
        Assert.That(store.Latest(), Is.EqualTo(previous));
        Assert.That(Content(previous), Is.EqualTo("good"));
        Assert.That(Leftovers(store), Is.Empty, "the half-written folder is removed");

        Assert.Throws<IOException>(() => store.Save(6, _ => throw new IOException("again")));
        Assert.That(store.Latest(), Is.EqualTo(previous), "a failed new step does not move the pointer");
        Assert.That(Directory.Exists(Path.Combine(store.Root, CheckpointStore.Name(6))), Is.False);
    }

    [Test]
    public void CrashBetweenMovingAsideAndMovingIn_IsRecoveredByLatest()
    {
        var store = new CheckpointStore(_run);
        string previous = store.Save(7, Writes("good"));
        store.AfterPreviousMovedAside = () => throw new InvalidOperationException("power loss (simulated)");
        Assert.Throws<InvalidOperationException>(() => store.Save(7, Writes("newer")));
        Assert.That(Directory.Exists(previous), Is.False, "the crash happened with the old folder aside");

        // A new process opens the run: the pointer names step 7, whose folder is aside; it comes back.
        var reopened = new CheckpointStore(_run);
        Assert.That(reopened.Latest(), Is.EqualTo(previous));
        Assert.That(Content(previous), Is.EqualTo("good"));
        Assert.That(File.ReadAllText(Path.Combine(previous, "nested", "state.json")), Is.EqualTo("good-state"));

        // Saving goes on normally. (The crashed writer's temporary folder is this process's, so it stays until this
        // process is gone; a later process removes it.)
        string next = reopened.Save(8, Writes("eight"));
        Assert.That(reopened.Latest(), Is.EqualTo(next));
        Assert.That(Content(previous), Is.EqualTo("good"));
        Assert.That(Leftovers(reopened).Where(n => n.EndsWith(".previous", StringComparison.Ordinal)), Is.Empty);
    }

    [Test]
    public void OnlyTheNewestCheckpointsAreKept()
    {
        var store = new CheckpointStore(_run, keepLast: 2);
        for (int step = 1; step <= 4; step++) store.Save(step, Writes($"s{step}"));
        var names = Directory.GetDirectories(store.Root, "step-*").Select(Path.GetFileName).Order().ToArray();
        Assert.That(names, Is.EqualTo(new[] { CheckpointStore.Name(3), CheckpointStore.Name(4) }));
        Assert.That(Content(store.Latest()!), Is.EqualTo("s4"));
    }

    [Test]
    public void TemporaryFoldersOfDeadWriters_AreRemoved()
    {
        var store = new CheckpointStore(_run);
        store.Save(1, Writes("one"));
        // A pid that no process has (beyond the kernel's pid_max).
        string stale = Path.Combine(store.Root, ".step-000002.99999999.tmp");
        Directory.CreateDirectory(stale);
        File.WriteAllText(Path.Combine(stale, "weights.bin"), "half");
        store.Save(2, Writes("two"));
        Assert.That(Directory.Exists(stale), Is.False);
        Assert.That(Leftovers(store), Is.Empty);
    }

    [Test]
    public void NoPointer_MeansNoCheckpoint()
    {
        Assert.That(new CheckpointStore(_run).Latest(), Is.Null);
    }

    /// <summary>
    /// A checkpoint the file system has no room for is refused before anything is written (a 7B run's 90 GB would otherwise
    /// fill the disk minutes in), naming the folder, both sizes and the setting that helps; the real file system answers
    /// for a folder not made yet (its nearest parent's).
    /// </summary>
    [Test]
    public void ACheckpointWithoutRoomIsRefusedBeforeAnythingIsWritten()
    {
        var store = new CheckpointStore(_run, keepLast: 2);
        Assert.That(store.FreeBytes(), Is.GreaterThan(0), "the checkpoints folder does not exist yet: its parent's file system answers");
        store.FreeBytesOverride = _ => 2_000_000_000;
        var error = Assert.Throws<IOException>(() => store.RequireSpace(5_000_000_000, 7))!;
        Assert.That(error.Message, Does.Contain(store.Root).And.Contain("update 7").And.Contain("5.0 GB").And.Contain("2.0 GB free")
            .And.Contain("keep_checkpoints, now 2"));
        Assert.That(Directory.Exists(store.Root), Is.False, "nothing was made");
        Assert.DoesNotThrow(() => store.RequireSpace(2_000_000_000, 7), "exactly the free space fits");
    }

    /// <summary>At the start of a run: a note when the file system cannot hold the checkpoints kept at once (keep_checkpoints, and one more while the newest is written).</summary>
    [TestCase(3, 3_999_999_999L, true)]
    [TestCase(3, 4_000_000_000L, false)]
    [TestCase(0, 1_999_999_999L, true)]
    public void TheRunIsToldWhenItsCheckpointsWillNotFit(int keep, long free, bool note)
    {
        var store = new CheckpointStore(_run, keep) { FreeBytesOverride = _ => free };
        string? text = store.SpaceNote(1_000_000_000);
        if (!note)
        {
            Assert.That(text, Is.Null);
            return;
        }
        Assert.That(text, Does.StartWith("note:").And.Contain("1.0 GB").And.Contain(store.Root).And.Contain("stops the run"));
        Assert.That(text, Does.Contain(keep > 0 ? $"{keep + 1} it holds at once" : "2 it holds at once"));
    }
}

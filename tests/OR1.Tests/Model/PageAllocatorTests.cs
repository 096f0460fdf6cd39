using OR1.Model.Generation;

namespace OR1.Tests.Model;

public sealed class PageAllocatorTests
{
    [Test]
    public void PagesAreHandedOutLowestFirstAndFreedWithTheirLastHolder()
    {
        var pages = new PageAllocator(3);
        Assert.That(new[] { pages.Allocate(), pages.Allocate() }, Is.EqualTo(new[] { 0, 1 }));
        pages.Retain(0);
        Assert.That(pages.References(0), Is.EqualTo(2));
        pages.Release(0);
        Assert.That(pages.FreeCount, Is.EqualTo(1), "page 0 still has a holder");
        Assert.That(pages.Allocate(), Is.EqualTo(2));
        Assert.That(pages.Allocate(), Is.EqualTo(-1), "none left");
        pages.Release(0);
        pages.Release(1);
        Assert.That(pages.Allocate(), Is.EqualTo(0), "the lowest free page first");
        pages.Reset();
        Assert.That(pages.FreeCount, Is.EqualTo(3));
    }

    [Test]
    public void ReleasingOrSharingAFreePageIsAnError()
    {
        var pages = new PageAllocator(2);
        Assert.That(() => pages.Release(1), Throws.InvalidOperationException.With.Message.Contains("already free"));
        Assert.That(() => pages.Retain(1), Throws.InvalidOperationException.With.Message.Contains("is free"));
        Assert.That(() => new PageAllocator(0), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }
}

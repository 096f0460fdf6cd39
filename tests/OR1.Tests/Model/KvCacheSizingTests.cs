using OR1.Model.Generation;

namespace OR1.Tests.Model;

public sealed class KvCacheSizingTests
{
    [Test]
    public void TheDefaultCacheIsWhatTheSlotsNeedWhenHalfTheFreeMemoryHoldsIt() =>
        Assert.That(KvCacheSizing.DefaultPages(wantedPages: 100, requestPages: 10, pageBytes: 1000, freeBytes: 1_000_000), Is.EqualTo(100));

    [Test]
    public void OtherwiseHalfTheFreeMemory() =>
        Assert.That(KvCacheSizing.DefaultPages(wantedPages: 100, requestPages: 10, pageBytes: 1000, freeBytes: 60_000), Is.EqualTo(30));

    [Test]
    public void NeverLessThanOneRequestNorMoreThanWanted()
    {
        Assert.That(KvCacheSizing.DefaultPages(wantedPages: 100, requestPages: 10, pageBytes: 1000, freeBytes: 4_000), Is.EqualTo(10));
        Assert.That(KvCacheSizing.DefaultPages(wantedPages: 6, requestPages: 10, pageBytes: 1000, freeBytes: 0), Is.EqualTo(6));
    }

    [Test]
    public void UnknownFreeMemoryTakesWhatIsWanted() =>
        Assert.That(KvCacheSizing.DefaultPages(wantedPages: 100, requestPages: 10, pageBytes: 1000, freeBytes: null), Is.EqualTo(100));
}

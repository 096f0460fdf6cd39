namespace OR1.Model.Generation;

/// <summary>
/// The pages of a paged KV cache, with reference counts: a prompt's full pages are shared by the samples prefilled
/// together (each holds a reference), and a page returns to the free list when its last holder lets go. Lowest pages
/// first, so a run's pages and its bits do not depend on the history of earlier calls.
/// </summary>
public sealed class PageAllocator
{
    private readonly int[] _references;
    private readonly SortedSet<int> _free;

    /// <summary>An allocator of <paramref name="pages"/> pages, all free.</summary>
    public PageAllocator(int pages)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pages, 1);
        _references = new int[pages];
        _free = new SortedSet<int>(Enumerable.Range(0, pages));
    }

    /// <summary>Pages in all.</summary>
    public int Pages => _references.Length;

    /// <summary>Pages no one holds.</summary>
    public int FreeCount => _free.Count;

    /// <summary>A free page, now held once; -1 if none is free.</summary>
    public int Allocate()
    {
        if (_free.Count == 0) return -1;
        int page = _free.Min;
        _free.Remove(page);
        _references[page] = 1;
        return page;
    }

    /// <summary>One more holder of a held page.</summary>
    public void Retain(int page)
    {
        if (_references[page] < 1) throw new InvalidOperationException($"page {page} is free; only a held page can be shared");
        _references[page]++;
    }

    /// <summary>One holder fewer; the page is free again when none is left.</summary>
    public void Release(int page)
    {
        if (_references[page] < 1) throw new InvalidOperationException($"page {page} is already free");
        if (--_references[page] == 0) _free.Add(page);
    }

    /// <summary>Holders of a page (0: free).</summary>
    public int References(int page) => _references[page];

    /// <summary>Frees every page.</summary>
    public void Reset()
    {
        Array.Clear(_references);
        _free.Clear();
        for (int p = 0; p < _references.Length; p++) _free.Add(p);
    }
}

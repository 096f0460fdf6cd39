namespace OR1.Native;

/// <summary>
/// How a backend lays out the positions of a key-cache page [pages, pageSize, Hkv*D] (<see cref="IBackend.KeyCacheLayout"/>):
/// <see cref="IBackend.WriteKeyCache"/> writes it and <see cref="IBackend.AttentionDecode"/> reads it, so only a test that
/// looks at the floats themselves needs to know. Value caches are always <see cref="Rows"/>.
/// </summary>
public enum KeyCacheLayout
{
    /// <summary>Position r of page P at element (P * pageSize + r) * width + c: one row per position (the kernel backends).</summary>
    Rows,

    /// <summary>
    /// Position r of page P at element P * pageSize * width + c * pageSize + r: each page transposed, a row per key
    /// element (the Cpu backend, whose decode computes scores on its GEMM micro-kernel, which reads keys this way).
    /// </summary>
    PageTransposed,
}

using OR1.Native;

namespace OR1.Tests.Support;

/// <summary>Moving test data between host arrays and backend tensors.</summary>
public static class BackendTensors
{
    public static Tensor Floats(this IBackend backend, float[] data, params int[] shape)
    {
        var t = backend.Allocate(DType.Float32, new TensorShape(shape));
        backend.Upload<float>(data, t);
        return t;
    }

    public static Tensor Ints(this IBackend backend, int[] data, params int[] shape)
    {
        var t = backend.Allocate(DType.Int32, new TensorShape(shape));
        backend.Upload<int>(data, t);
        return t;
    }

    /// <summary>
    /// A key cache [pages, pageSize, width] holding rows [pages * pageSize, width] (row r = page * pageSize + position),
    /// written through <see cref="IBackend.WriteKeyCache"/> in the backend's <see cref="KeyCacheLayout"/>, as the rollout
    /// engine writes it; the tensor has the rows' dtype.
    /// </summary>
    public static Tensor KeyCache(this IBackend backend, Tensor rows, int pages, int pageSize)
    {
        int count = checked(pages * pageSize), width = (int)(rows.ElementCount / Math.Max(1, count));
        var cache = backend.Allocate(rows.DType, new TensorShape(pages, pageSize, width));
        using var indices = backend.Ints(Enumerable.Range(0, count).ToArray(), count);
        backend.WriteKeyCache(rows.Reshape(count, width), indices, cache);
        return cache;
    }

    /// <summary>A float key cache [pages, pageSize, width] from its rows (see the other overload).</summary>
    public static Tensor KeyCache(this IBackend backend, float[] rows, int pages, int pageSize, int width)
    {
        using var source = backend.Floats(rows, checked(pages * pageSize), width);
        return backend.KeyCache(source, pages, pageSize);
    }

    public static Tensor Zeros(this IBackend backend, params int[] shape) => backend.Allocate(DType.Float32, new TensorShape(shape));

    /// <summary>A tensor filled with NaN, for outputs that an op must overwrite completely.</summary>
    public static Tensor Poisoned(this IBackend backend, params int[] shape)
    {
        var t = backend.Allocate(DType.Float32, new TensorShape(shape));
        backend.Fill(t, float.NaN);
        return t;
    }

    public static float[] ToFloats(this Tensor t)
    {
        var result = new float[t.ElementCount];
        t.Backend.Download<float>(t, result);
        return result;
    }

    public static int[] ToInts(this Tensor t)
    {
        var result = new int[t.ElementCount];
        t.Backend.Download<int>(t, result);
        return result;
    }
}

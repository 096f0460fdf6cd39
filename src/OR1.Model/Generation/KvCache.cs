using OR1.Native;

namespace OR1.Model.Generation;

/// <summary>
/// Keys and values of every layer for a fixed number of sequence slots (the rollout engine's pages), each up to a maximum
/// length: per layer [slots, maxLength, kvHeads * headDim]. Slot s, position p is cache row s * maxLength + p, which is
/// how prefill and decode write into it (<see cref="IBackend.WriteKeyCache"/> for the keys, in the backend's
/// <see cref="KeyCacheLayout"/>; <see cref="IBackend.ScatterRows"/> into <see cref="ValueRows"/> for the values). Stored in
/// the model's precision.
/// </summary>
public sealed class KvCache : IDisposable
{
    public KvCache(IBackend backend, Qwen2Config config, int slots, int maxLength, DType storage = DType.Float32)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        Slots = slots;
        MaxLength = maxLength;
        int width = config.NumKeyValueHeads * config.HeadDim;
        Keys = new Tensor[config.NumHiddenLayers];
        Values = new Tensor[config.NumHiddenLayers];
        for (int l = 0; l < Keys.Length; l++)
        {
            Keys[l] = backend.Allocate(storage, new TensorShape(slots, maxLength, width), $"kv cache keys {l}");
            Values[l] = backend.Allocate(storage, new TensorShape(slots, maxLength, width), $"kv cache values {l}");
        }
        Width = width;
    }

    public int Slots { get; }
    public int MaxLength { get; }
    public int Width { get; }
    public Tensor[] Keys { get; }
    public Tensor[] Values { get; }

    /// <summary>Layer l's keys as [slots * maxLength, width] (rows in the <see cref="KeyCacheLayout.Rows"/> layout; whole slots
    /// of it copy in any layout).</summary>
    public Tensor KeyRows(int layer) => Keys[layer].Reshape(Slots * MaxLength, Width);

    /// <summary>Layer l's values as rows [slots * maxLength, width].</summary>
    public Tensor ValueRows(int layer) => Values[layer].Reshape(Slots * MaxLength, Width);

    public void Dispose()
    {
        foreach (var t in Keys) t.Dispose();
        foreach (var t in Values) t.Dispose();
    }
}

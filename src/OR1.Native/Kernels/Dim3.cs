namespace OR1.Native.Kernels;

/// <summary>A CUDA grid or block shape.</summary>
internal readonly record struct Dim3(uint X, uint Y = 1, uint Z = 1)
{
    public static implicit operator Dim3(int x) => new((uint)x);

    public static implicit operator Dim3(uint x) => new(x);

    public long Volume => (long)X * Y * Z;

    public override string ToString() => $"({X}, {Y}, {Z})";
}

namespace OR1.Tests.Reference;

/// <summary>Token embedding lookup: table [vocab, dim], token ids [N], output [N, dim].</summary>
public static class EmbeddingReference
{
    /// <summary>output[n, :] = table[tokenIds[n], :].</summary>
    public static double[] Forward(int[] tokenIds, double[] table, int vocab, int dim)
    {
        if (table.Length != vocab * dim) throw new ArgumentException($"table has {table.Length} elements, expected {vocab}x{dim}", nameof(table));
        var output = new double[tokenIds.Length * dim];
        for (int n = 0; n < tokenIds.Length; n++)
        {
            int id = CheckId(tokenIds[n], vocab, n);
            for (int d = 0; d < dim; d++) output[n * dim + d] = table[id * dim + d];
        }
        return output;
    }

    /// <summary>dTable[tokenIds[n], :] += dOutput[n, :] (accumulates: it is a parameter gradient; repeated ids add up).</summary>
    public static void Backward(int[] tokenIds, double[] dOutput, int vocab, int dim, double[] dTable)
    {
        if (dTable.Length != vocab * dim) throw new ArgumentException($"dTable has {dTable.Length} elements, expected {vocab}x{dim}", nameof(dTable));
        if (dOutput.Length != tokenIds.Length * dim) throw new ArgumentException($"dOutput has {dOutput.Length} elements, expected {tokenIds.Length}x{dim}", nameof(dOutput));
        for (int n = 0; n < tokenIds.Length; n++)
        {
            int id = CheckId(tokenIds[n], vocab, n);
            for (int d = 0; d < dim; d++) dTable[id * dim + d] += dOutput[n * dim + d];
        }
    }

    private static int CheckId(int id, int vocab, int n)
    {
        if ((uint)id >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(id), $"token {n} has id {id}, outside [0, {vocab})");
        return id;
    }
}

namespace OR1.Tests.Reference;

/// <summary>SwiGLU gating: output = silu(gate) * up, silu(g) = g * sigmoid(g). All arrays [N, F], elementwise.</summary>
public static class SwiGluReference
{
    /// <summary>output[i] = silu(gate[i]) * up[i].</summary>
    public static double[] Forward(double[] gate, double[] up)
    {
        CheckSameLength(gate, up, nameof(up));
        var output = new double[gate.Length];
        for (int i = 0; i < gate.Length; i++) output[i] = Silu(gate[i]) * up[i];
        return output;
    }

    /// <summary>dGate = dOut * up * silu'(gate), silu'(g) = s (1 + g (1 - s)) with s = sigmoid(g); dUp = dOut * silu(gate).</summary>
    public static (double[] DGate, double[] DUp) Backward(double[] dOutput, double[] gate, double[] up)
    {
        CheckSameLength(gate, up, nameof(up));
        CheckSameLength(gate, dOutput, nameof(dOutput));
        var dGate = new double[gate.Length];
        var dUp = new double[gate.Length];
        for (int i = 0; i < gate.Length; i++)
        {
            double s = Sigmoid(gate[i]);
            dGate[i] = dOutput[i] * up[i] * s * (1 + gate[i] * (1 - s));
            dUp[i] = dOutput[i] * gate[i] * s;
        }
        return (dGate, dUp);
    }

    /// <summary>g * sigmoid(g).</summary>
    public static double Silu(double g) => g * Sigmoid(g);

    /// <summary>1 / (1 + exp(-g)).</summary>
    public static double Sigmoid(double g) => 1.0 / (1.0 + Math.Exp(-g));

    private static void CheckSameLength(double[] a, double[] b, string name)
    {
        if (a.Length != b.Length) throw new ArgumentException($"{name} has {b.Length} elements, gate has {a.Length}", name);
    }
}

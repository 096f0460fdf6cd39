namespace OR1.Tests.Reference;

/// <summary>One torch.optim.AdamW step (decoupled weight decay, bias correction) on double arrays, in place.</summary>
public static class AdamWReference
{
    /// <summary>
    /// With g = gradientScale * gradient: p -= lr * wd * p (when applyWeightDecay); m = b1 m + (1 - b1) g;
    /// v = b2 v + (1 - b2) g^2; p -= lr * (m / (1 - b1^step)) / (sqrt(v / (1 - b2^step)) + eps).
    /// step is 1-based.
    /// </summary>
    public static void Step(double[] parameter, double[] gradient, double[] firstMoment, double[] secondMoment,
        int step, double learningRate, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8,
        double weightDecay = 0.01, bool applyWeightDecay = true, double gradientScale = 1)
    {
        int n = parameter.Length;
        if (gradient.Length != n || firstMoment.Length != n || secondMoment.Length != n)
            throw new ArgumentException($"parameter, gradient and moments have {n}, {gradient.Length}, {firstMoment.Length}, {secondMoment.Length} elements");
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), $"step is 1-based, got {step}");
        double correction1 = 1 - Math.Pow(beta1, step);
        double correction2 = 1 - Math.Pow(beta2, step);
        for (int i = 0; i < n; i++)
        {
            double g = gradientScale * gradient[i];
            if (applyWeightDecay) parameter[i] -= learningRate * weightDecay * parameter[i];
            firstMoment[i] = beta1 * firstMoment[i] + (1 - beta1) * g;
            secondMoment[i] = beta2 * secondMoment[i] + (1 - beta2) * g * g;
            double mHat = firstMoment[i] / correction1;
            double vHat = secondMoment[i] / correction2;
            parameter[i] -= learningRate * mHat / (Math.Sqrt(vHat) + epsilon);
        }
    }
}

namespace OR1.Grpo.Training;

/// <summary>
/// What a checkpoint keeps of the optimizer for each parameter tensor: the fp32 parameters (the master in mixed
/// precision) and AdamW's two moments (torch's exp_avg and exp_avg_sq).
/// </summary>
public enum OptimizerState
{
    Parameters,
    FirstMoment,
    SecondMoment,
}

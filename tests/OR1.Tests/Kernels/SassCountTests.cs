namespace OR1.Tests.Kernels;

/// <summary>
/// The per-function instruction counts the compiled-code checks rest on, on a literal cuobjdump -sass listing (so they
/// run without the CUDA toolchain): a regular expression that matched nothing would let those checks pass vacuously.
/// </summary>
public sealed class SassCountTests
{
    private const string Listing = """
        	code for sm_90
        		Function : rmsnorm_forward_bf16
        	.headerflags	@"EF_CUDA_TEXMODE_UNIFIED EF_CUDA_64BIT_ADDRESS EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
                /*03b0*/                   LDG.E.128.CONSTANT R4, [R4.64] ;                       /* 0x0000000e04047981 */
                /*0640*/                   LDG.E.U16.CONSTANT R2, [R2.64] ;                       /* 0x0000000e02027981 */
                /*0d50*/                   LDG.E.128 R4, [R20.64] ;                               /* 0x0000000e14047981 */
                /*0d60*/                   STG.E.128 [R4.64], R8 ;                                /* 0x0000000804007986 */
        		Function : sumsq_final
                /*00b0*/                   LDG.E.64.CONSTANT R4, [R4.64] ;                        /* 0x0000000604047981 */
                /*00c0*/                   LD.E.128 R8, [R2.64] ;                                 /* 0x0000000e02087980 */
        		Function : attention_forward_bf16_d64
                /*1000*/                   HMMA.16816.F32.BF16 R4, R8, R12, R4 ;                  /* 0x0000000c0804723c */
                /*1010*/              @!P0 LDG.E.EL.128 R16, [R2.64] ;                           /* 0x0000000e02108981 */
        """;

    [Test]
    public void SixteenByteGlobalLoadsAreCountedPerFunction()
    {
        var counts = KernelCompilation.CountLdg128(Listing);
        Assert.Multiple(() =>
        {
            Assert.That(counts["rmsnorm_forward_bf16"], Is.EqualTo(2), "LDG.E.128 and LDG.E.128.CONSTANT, not the 2-byte load or the store");
            Assert.That(counts["sumsq_final"], Is.Zero, "an 8-byte LDG and a generic LD.E.128 are not 16-byte global loads");
            Assert.That(counts["attention_forward_bf16_d64"], Is.EqualTo(1), "a predicated load with another qualifier before .128");
        });
    }

    [Test]
    public void TensorCoreInstructionsAreCountedPerFunction()
    {
        var counts = KernelCompilation.CountHmma(Listing);
        Assert.That(counts, Is.EqualTo(new Dictionary<string, int> { ["rmsnorm_forward_bf16"] = 0, ["sumsq_final"] = 0, ["attention_forward_bf16_d64"] = 1 }));
    }
}

namespace OR1.Native;

/// <summary>Which implementation of the op contract a backend is.</summary>
public enum BackendKind
{
    /// <summary>Managed SIMD + multi-threaded CPU code; the oracle for the other backends.</summary>
    Cpu,
    /// <summary>The CUDA C++ kernels on an NVIDIA GPU through the driver API.</summary>
    Cuda,
    /// <summary>The same CUDA C++ kernels compiled for the host against the execution-model emulator.</summary>
    Emu,
    /// <summary>ILGPU kernels on an ILGPU accelerator (its CPU simulator or a CUDA device).</summary>
    Ilgpu,
}

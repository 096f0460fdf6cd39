using System.Runtime.InteropServices;
using System.Text;

namespace OR1.Native.Cuda;

/// <summary>
/// The kernels of kernels/*.cu as loaded CUDA modules. Prebuilt images come first: kernels/sm_90 or
/// kernels/sm_80 next to OR1.Native.dll (cubins for the device's architecture family, else PTX, which
/// the driver JIT-compiles), built by CMake when nvcc was present. Without them the sources shipped in
/// kernels/src are compiled at run time by NVRTC for the device's compute capability.
/// OR1_CUDA_KERNELS=nvrtc forces NVRTC; OR1_CUDA_KERNELS=prebuilt forbids it.
/// </summary>
internal sealed unsafe class CudaModules : IDisposable
{
    private readonly List<(string Name, nint Module)> _modules = [];
    private readonly Dictionary<string, nint> _functions = new(StringComparer.Ordinal);

    private CudaModules(string source) => Source = source;

    /// <summary>
    /// Where the kernels came from, for descriptions: the prebuilt folder with how many modules loaded as cubin (native
    /// code for this device) and how many as PTX (compiled by the driver at load), or NVRTC with its version.
    /// </summary>
    public string Source { get; private set; }

    /// <summary>The kernels folder beside OR1.Native.dll.</summary>
    public static string KernelDirectory =>
        Path.Combine(Path.GetDirectoryName(typeof(CudaModules).Assembly.Location) is { Length: > 0 } d ? d : AppContext.BaseDirectory, "kernels");

    /// <summary>Loads every kernel module for a device of compute capability <paramref name="capability"/> (e.g. 90).</summary>
    public static CudaModules Load(int capability)
    {
        string mode = Environment.GetEnvironmentVariable("OR1_CUDA_KERNELS") ?? "";
        string dir = KernelDirectory;
        int arch = capability >= 90 ? 90 : capability >= 80 ? 80 : 0;
        string prebuilt = Path.Combine(dir, $"sm_{arch}");
        if (mode != "nvrtc" && arch > 0 && Directory.Exists(prebuilt) && Directory.EnumerateFiles(prebuilt, "*.ptx").Any())
        {
            var modules = new CudaModules($"prebuilt from {prebuilt}");
            try
            {
                int cubins = 0, ptxs = 0;
                foreach (var ptx in Directory.EnumerateFiles(prebuilt, "*.ptx").Order(StringComparer.Ordinal))
                {
                    string name = Path.GetFileNameWithoutExtension(ptx);
                    string cubin = Path.Combine(prebuilt, name + ".cubin");
                    if (capability / 10 == arch / 10 && File.Exists(cubin))
                    {
                        modules.LoadImage(name, File.ReadAllBytes(cubin), isText: false);
                        cubins++;
                    }
                    else
                    {
                        modules.LoadImage(name, File.ReadAllBytes(ptx), isText: true);
                        ptxs++;
                    }
                }
                string loaded = (cubins, ptxs) switch
                {
                    (_, 0) => $"{cubins} cubin",
                    (0, _) => $"{ptxs} PTX, JIT-compiled by the driver for sm_{capability}",
                    _ => $"{cubins} cubin, {ptxs} PTX JIT-compiled by the driver",
                };
                modules.Source = $"prebuilt sm_{arch} ({loaded}) from {prebuilt}";
                return modules;
            }
            catch
            {
                modules.Dispose();
                throw;
            }
        }
        if (mode == "prebuilt")
            throw new BackendUnavailableException(BackendKind.Cuda, $"no prebuilt kernels for sm_{capability} in {dir} (OR1_CUDA_KERNELS=prebuilt forbids NVRTC)");
        string sources = Path.Combine(dir, "src");
        if (!Directory.Exists(sources) || !Directory.EnumerateFiles(sources, "*.cu").Any())
            throw new BackendUnavailableException(BackendKind.Cuda, $"neither prebuilt PTX ({prebuilt}) nor kernel sources ({sources}) are present to load");
        var compiled = new CudaModules($"NVRTC ({NvrtcCompiler.VersionText()}) from {sources}");
        try
        {
            foreach (var source in Directory.EnumerateFiles(sources, "*.cu").Order(StringComparer.Ordinal))
            {
                string ptx = NvrtcCompiler.CompileFile(source, capability, sources);
                compiled.LoadImage(Path.GetFileNameWithoutExtension(source), Encoding.UTF8.GetBytes(ptx), isText: true);
            }
            return compiled;
        }
        catch
        {
            compiled.Dispose();
            throw;
        }
    }

    private void LoadImage(string name, byte[] image, bool isText)
    {
        byte[] data = image;
        if (isText && (data.Length == 0 || data[^1] != 0))
        {
            data = new byte[image.Length + 1];
            image.CopyTo(data, 0);
        }
        const int logSize = 8192;
        byte* errorLog = stackalloc byte[logSize];
        errorLog[0] = 0;
        int* options = stackalloc int[] { CudaDriver.CU_JIT_ERROR_LOG_BUFFER, CudaDriver.CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES };
        void** values = stackalloc void*[] { errorLog, (void*)(nint)logSize };
        int rc;
        nint module;
        fixed (byte* p = data) rc = CudaDriver.cuModuleLoadDataEx(out module, p, 2, options, values);
        if (rc != 0)
            throw new CudaException("driver", $"cuModuleLoadDataEx({name})", rc, CudaDriver.ErrorName(rc), Marshal.PtrToStringUTF8((nint)errorLog));
        _modules.Add((name, module));
    }

    /// <summary>The function of an extern "C" kernel, found in whichever module defines it.</summary>
    public nint Function(string kernel)
    {
        lock (_functions)
        {
            if (_functions.TryGetValue(kernel, out nint f)) return f;
            byte[] name = Encoding.UTF8.GetBytes(kernel + "\0");
            foreach (var (_, module) in _modules)
            {
                int rc;
                fixed (byte* n = name) rc = CudaDriver.cuModuleGetFunction(out f, module, n);
                if (rc == 0)
                {
                    _functions[kernel] = f;
                    return f;
                }
                if (rc != 500) CudaErrors.Driver(rc, $"cuModuleGetFunction({kernel})"); // 500: CUDA_ERROR_NOT_FOUND
            }
            throw new CudaException("driver", $"cuModuleGetFunction({kernel})", 500, "CUDA_ERROR_NOT_FOUND", $"no loaded module ({Source}) defines the kernel");
        }
    }

    public void Dispose()
    {
        foreach (var (_, module) in _modules) CudaDriver.cuModuleUnload(module);
        _modules.Clear();
        _functions.Clear();
    }
}

/// <summary>Compiles kernels/*.cu to PTX with NVRTC (no host compiler involved).</summary>
public static unsafe class NvrtcCompiler
{
    /// <summary>NVRTC's version as "major.minor", or throws <see cref="DllNotFoundException"/> when it is not installed.</summary>
    public static string VersionText()
    {
        CudaErrors.Nvrtc(Nvrtc.nvrtcVersion(out int major, out int minor), "nvrtcVersion");
        return $"{major}.{minor}";
    }

    /// <summary>
    /// Compiles one kernel source to PTX for compute capability <paramref name="capability"/> (80, 90, ...);
    /// <paramref name="includeDirectory"/> holds common.cuh. Compiler errors raise <see cref="CudaException"/> with NVRTC's log.
    /// </summary>
    public static string CompileFile(string path, int capability, string includeDirectory, params string[] extraOptions)
    {
        string source = File.ReadAllText(path);
        return Compile(source, Path.GetFileName(path), capability, includeDirectory, extraOptions);
    }

    /// <summary>Compiles CUDA C++ source text to PTX.</summary>
    public static string Compile(string source, string name, int capability, string includeDirectory, params string[] extraOptions)
    {
        var options = new List<string>
        {
            $"--gpu-architecture=compute_{capability}",
            "--std=c++17",
            $"--include-path={includeDirectory}",
            "--device-as-default-execution-space",
        };
        options.AddRange(extraOptions);
        byte[] src = Encoding.UTF8.GetBytes(source + "\0");
        byte[] nm = Encoding.UTF8.GetBytes(name + "\0");
        nint program;
        fixed (byte* s = src)
        fixed (byte* n = nm)
            CudaErrors.Nvrtc(Nvrtc.nvrtcCreateProgram(out program, s, n, 0, null, null), "nvrtcCreateProgram");
        try
        {
            var encoded = options.Select(o => Encoding.UTF8.GetBytes(o + "\0")).ToArray();
            var handles = encoded.Select(e => GCHandle.Alloc(e, GCHandleType.Pinned)).ToArray();
            int rc;
            try
            {
                byte** pointers = stackalloc byte*[encoded.Length];
                for (int i = 0; i < encoded.Length; i++) pointers[i] = (byte*)handles[i].AddrOfPinnedObject();
                rc = Nvrtc.nvrtcCompileProgram(program, encoded.Length, pointers);
            }
            finally
            {
                foreach (var h in handles) h.Free();
            }
            if (rc != 0) CudaErrors.Nvrtc(rc, $"nvrtcCompileProgram({name}, compute_{capability})", Log(program));
            CudaErrors.Nvrtc(Nvrtc.nvrtcGetPTXSize(program, out nuint size), "nvrtcGetPTXSize");
            var ptx = new byte[(int)size];
            fixed (byte* p = ptx) CudaErrors.Nvrtc(Nvrtc.nvrtcGetPTX(program, p), "nvrtcGetPTX");
            return Encoding.UTF8.GetString(ptx, 0, Math.Max(0, ptx.Length - 1));
        }
        finally
        {
            Nvrtc.nvrtcDestroyProgram(ref program);
        }
    }

    private static string Log(nint program)
    {
        if (Nvrtc.nvrtcGetProgramLogSize(program, out nuint size) != 0 || size <= 1) return "";
        var log = new byte[(int)size];
        fixed (byte* l = log) Nvrtc.nvrtcGetProgramLog(program, l);
        return Encoding.UTF8.GetString(log, 0, log.Length - 1);
    }
}

using System.Reflection;
using System.Runtime.InteropServices;

namespace OR1.Native.Emu;

/// <summary>
/// The native library libor1_emu (kernels/*.cu compiled for the host against kernels/emu), loaded once
/// per process. Its C API: or1_emu_find_kernel / or1_emu_launch_kernel / or1_emu_launch (cuLaunchKernel's
/// shape: kernel, grid, block, shared bytes, pointers to argument values), or1_emu_last_error, and the
/// driver's shared-memory opt-in: or1_emu_set_max_dynamic_shared / or1_emu_get_max_dynamic_shared
/// (cuFuncSetAttribute / cuFuncGetAttribute of CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES),
/// or1_emu_set_device_arch / or1_emu_device_arch / or1_emu_max_shared_optin (the emulated sm_80 or sm_90).
/// </summary>
internal static unsafe class EmuLibrary
{
    public const string FileName = "libor1_emu.so";

    private static readonly Lazy<Api> s_api = new(Load, LazyThreadSafetyMode.ExecutionAndPublication);

    internal sealed class Api
    {
        public required nint Handle { get; init; }
        public required string Path { get; init; }
        public required delegate* unmanaged<byte*, nint> FindKernel { get; init; }
        public required delegate* unmanaged<nint, uint, uint, uint, uint, uint, uint, uint, void**, int, int*, int> LaunchKernel { get; init; }
        public required delegate* unmanaged<byte*, uint, uint, uint, uint, uint, uint, uint, void**, int> Launch { get; init; }
        public required delegate* unmanaged<byte*> LastError { get; init; }
        public required delegate* unmanaged<int, void> SetSchedule { get; init; }
        public required delegate* unmanaged<int> Threads { get; init; }
        public required delegate* unmanaged<int> KernelCount { get; init; }
        public required delegate* unmanaged<int, byte*> KernelName { get; init; }
        public required delegate* unmanaged<int, int> SetDeviceArch { get; init; }
        public required delegate* unmanaged<int> DeviceArch { get; init; }
        public required delegate* unmanaged<int> MaxSharedOptIn { get; init; }
        public required delegate* unmanaged<nint, int, int> SetMaxDynamicShared { get; init; }
        public required delegate* unmanaged<nint, int> GetMaxDynamicShared { get; init; }
    }

    /// <summary>The loaded API, or a <see cref="BackendUnavailableException"/> naming what to build.</summary>
    public static Api Get()
    {
        try
        {
            return s_api.Value;
        }
        catch (BackendUnavailableException)
        {
            throw;
        }
    }

    /// <summary>Where the library is looked for, in order.</summary>
    public static IReadOnlyList<string> Candidates()
    {
        var list = new List<string>();
        if (Environment.GetEnvironmentVariable("OR1_EMU_LIBRARY") is { Length: > 0 } explicitPath) list.Add(explicitPath);
        string baseDir = AppContext.BaseDirectory;
        string? assemblyDir = System.IO.Path.GetDirectoryName(typeof(EmuLibrary).Assembly.Location);
        foreach (var dir in new[] { baseDir, assemblyDir })
        {
            if (string.IsNullOrEmpty(dir)) continue;
            list.Add(System.IO.Path.Combine(dir, FileName));
            list.Add(System.IO.Path.Combine(dir, "runtimes", "linux-x64", "native", FileName));
        }
        return list.Distinct().ToList();
    }

    private static Api Load()
    {
        if (!OperatingSystem.IsLinux())
            throw new BackendUnavailableException(BackendKind.Emu, "the emulation library is built for Linux only");
        var tried = new List<string>();
        nint handle = 0;
        string path = "";
        foreach (var candidate in Candidates())
        {
            tried.Add(candidate);
            if (!File.Exists(candidate)) continue;
            try
            {
                handle = NativeLibrary.Load(candidate);
                path = candidate;
                break;
            }
            catch (DllNotFoundException e)
            {
                throw new BackendUnavailableException(BackendKind.Emu, $"{candidate} exists but could not be loaded: {e.Message}", e);
            }
        }
        if (handle == 0 && NativeLibrary.TryLoad(FileName, Assembly.GetExecutingAssembly(), DllImportSearchPath.SafeDirectories, out handle))
            path = FileName;
        if (handle == 0)
            throw new BackendUnavailableException(BackendKind.Emu,
                $"{FileName} was not found (looked in: {string.Join(", ", tried)}). It is built from kernels/ by CMake: " +
                "`dotnet build` runs it when cmake and a C++ compiler are installed (apt-get install cmake g++), " +
                "or build it by hand with `cmake -S . -B build/kernels && cmake --build build/kernels` and set OR1_EMU_LIBRARY to build/kernels/out/libor1_emu.so");
        nint Export(string name) =>
            NativeLibrary.TryGetExport(handle, name, out nint f)
                ? f
                : throw new BackendUnavailableException(BackendKind.Emu, $"{path} does not export {name}; rebuild it from this version's kernels/");
        return new Api
        {
            Handle = handle,
            Path = path,
            FindKernel = (delegate* unmanaged<byte*, nint>)Export("or1_emu_find_kernel"),
            LaunchKernel = (delegate* unmanaged<nint, uint, uint, uint, uint, uint, uint, uint, void**, int, int*, int>)Export("or1_emu_launch_kernel"),
            Launch = (delegate* unmanaged<byte*, uint, uint, uint, uint, uint, uint, uint, void**, int>)Export("or1_emu_launch"),
            LastError = (delegate* unmanaged<byte*>)Export("or1_emu_last_error"),
            SetSchedule = (delegate* unmanaged<int, void>)Export("or1_emu_set_schedule"),
            Threads = (delegate* unmanaged<int>)Export("or1_emu_threads"),
            KernelCount = (delegate* unmanaged<int>)Export("or1_emu_kernel_count"),
            KernelName = (delegate* unmanaged<int, byte*>)Export("or1_emu_kernel_name"),
            SetDeviceArch = (delegate* unmanaged<int, int>)Export("or1_emu_set_device_arch"),
            DeviceArch = (delegate* unmanaged<int>)Export("or1_emu_device_arch"),
            MaxSharedOptIn = (delegate* unmanaged<int>)Export("or1_emu_max_shared_optin"),
            SetMaxDynamicShared = (delegate* unmanaged<nint, int, int>)Export("or1_emu_set_max_dynamic_shared"),
            GetMaxDynamicShared = (delegate* unmanaged<nint, int>)Export("or1_emu_get_max_dynamic_shared"),
        };
    }

    /// <summary>The message of the calling thread's last failed launch.</summary>
    public static string LastError(Api api) => Marshal.PtrToStringUTF8((nint)api.LastError()) ?? "";

    /// <summary>Names of every registered kernel.</summary>
    public static IReadOnlyList<string> KernelNames()
    {
        var api = Get();
        int n = api.KernelCount();
        var names = new string[n];
        for (int i = 0; i < n; i++) names[i] = Marshal.PtrToStringUTF8((nint)api.KernelName(i)) ?? "";
        return names;
    }
}

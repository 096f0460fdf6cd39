// emu_selftest.cpp — CTest executable: runs the self-test kernels of selftest.cu through the C API of
// or1_emu exactly as the .NET Emu backend does, and checks every result. Exit code 0 = all passed.
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

extern "C" {
int or1_emu_launch(const char* kernel, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned sharedBytes, void** args);
const char* or1_emu_last_error();
void or1_emu_set_schedule(int reverse);
int or1_emu_kernel_count();
const void* or1_emu_find_kernel(const char* name);
int or1_emu_set_device_arch(int arch);
int or1_emu_max_shared_optin();
int or1_emu_set_max_dynamic_shared(const void* kernel, int bytes);
int or1_emu_get_max_dynamic_shared(const void* kernel);
int or1_emu_kernel_max_threads(const void* kernel);
}

static int failures = 0;
static int checks = 0;

static void check(bool ok, const std::string& what) {
    checks++;
    if (!ok) {
        failures++;
        std::printf("FAIL: %s\n", what.c_str());
    }
}

static bool contains(const char* text, std::initializer_list<const char*> parts) {
    for (const char* part : parts)
        if (!std::strstr(text, part)) return false;
    return true;
}

static bool launch(const char* kernel, unsigned gx, unsigned bx, unsigned shared, std::vector<void*> args) {
    int rc = or1_emu_launch(kernel, gx, 1, 1, bx, 1, 1, shared, args.data());
    if (rc != 0) std::printf("launch of %s failed (%d): %s\n", kernel, rc, or1_emu_last_error());
    return rc == 0;
}

int main() {
    check(or1_emu_kernel_count() >= 30, "the kernel registry holds the families and the self-tests");

    { // barrier-ordered exchange, several blocks, odd block size
        const int blocks = 3, n = 97;
        std::vector<int> out(blocks * n, -1);
        int* p = out.data();
        check(launch("emu_selftest_exchange", blocks, n, 0, {&p}), "exchange launches");
        bool ok = true;
        for (int b = 0; b < blocks; b++)
            for (int i = 0; i < n; i++) ok &= out[b * n + i] == 2 * ((i + 1) % n) + 1 + 1000 * b;
        check(ok, "barrier-ordered shared-memory exchange");
    }
    { // shuffles
        const int n = 64;
        std::vector<int> out(4 * n, -1);
        int* p = out.data();
        check(launch("emu_selftest_shuffle", 1, n, 0, {&p}), "shuffle launches");
        bool ok = true;
        for (int t = 0; t < n; t++) {
            int lane = t & 31;
            ok &= out[4 * t + 0] == 100 + (lane ^ 5);
            ok &= out[4 * t + 1] == 100 + (lane >= 3 ? lane - 3 : lane);
            ok &= out[4 * t + 2] == 100 + (lane + 3 < 32 ? lane + 3 : lane);
            ok &= out[4 * t + 3] == 100 + ((lane & ~7) + 7);
        }
        check(ok, "shuffles xor / up / down / idx with width");
    }
    { // block reduction and ballot
        const int blocks = 5, n = 256;
        std::vector<float> x(blocks * n), out(blocks, 0.f);
        std::vector<unsigned> ballots(blocks * n / 32, 0);
        for (int i = 0; i < blocks * n; i++) x[i] = static_cast<float>(i % 7);
        float* px = x.data();
        float* po = out.data();
        unsigned* pb = ballots.data();
        check(launch("emu_selftest_reduce", blocks, n, 0, {&px, &po, &pb}), "reduce launches");
        bool ok = true;
        for (int b = 0; b < blocks; b++) {
            double expected = 0;
            for (int i = 0; i < n; i++) expected += x[b * n + i];
            ok &= std::fabs(out[b] - expected) < 1e-3;
        }
        check(ok, "block reduction");
        bool ballotOk = true;
        for (int w = 0; w < blocks * n / 32; w++) {
            unsigned expected = 0;
            for (int l = 0; l < 32; l++) expected |= (static_cast<int>(x[w * 32 + l]) & 1 ? 1u : 0u) << l;
            ballotOk &= ballots[w] == expected;
        }
        check(ballotOk, "warp ballot");
    }
    { // a race made deterministic (forward schedule) and visible (reverse schedule)
        const int n = 128;
        int forward = -1, again = -1, reverse = -1;
        int* p = &forward;
        launch("emu_selftest_race", 1, n, 0, {&p});
        p = &again;
        launch("emu_selftest_race", 1, n, 0, {&p});
        or1_emu_set_schedule(1);
        p = &reverse;
        launch("emu_selftest_race", 1, n, 0, {&p});
        or1_emu_set_schedule(0);
        check(forward == n - 1 && again == forward, "a race is deterministic under one schedule");
        check(reverse == 0, "the reverse schedule makes the race visible");
        // A correctly ordered kernel does not care about the schedule.
        std::vector<int> a(n), b(n);
        int* pa = a.data();
        int* pb = b.data();
        launch("emu_selftest_exchange", 1, n, 0, {&pa});
        or1_emu_set_schedule(1);
        launch("emu_selftest_exchange", 1, n, 0, {&pb});
        or1_emu_set_schedule(0);
        check(a == b, "a barrier-ordered kernel gives the same result under both schedules");
    }
    { // atomics across blocks running on several host threads
        int counter = 0, maximum = -1, casWinner = -1;
        float fsum = 0.f;
        int* pc = &counter;
        float* pf = &fsum;
        int* pm = &maximum;
        int* pw = &casWinner;
        const int blocks = 16, n = 128;
        check(launch("emu_selftest_atomics", blocks, n, 0, {&pc, &pf, &pm, &pw}), "atomics launch");
        check(counter == blocks * n, "atomicAdd(int) counts every thread");
        check(fsum == 0.5f * blocks * n, "atomicAdd(float)");
        check(maximum == blocks * n - 1, "atomicMax");
        check(casWinner >= 0 && casWinner < blocks * n, "atomicCAS has exactly one winner");
    }
    { // dynamic shared memory
        const int n = 300;
        std::vector<float> x(n), out(n);
        for (int i = 0; i < n; i++) x[i] = static_cast<float>(i);
        float* px = x.data();
        float* po = out.data();
        int nn = n;
        check(launch("emu_selftest_dynamic_shared", 1, 64, n * sizeof(float), {&px, &po, &nn}), "dynamic shared launches");
        bool ok = true;
        for (int i = 0; i < n; i++) ok &= out[i] == static_cast<float>(n - 1 - i);
        check(ok, "dynamic shared memory");
    }
    { // deadlock is reported, not hung
        std::vector<int> out(64, 0);
        int* p = out.data();
        std::vector<void*> args{&p};
        int rc = or1_emu_launch("emu_selftest_deadlock", 1, 1, 1, 64, 1, 1, 0, args.data());
        check(rc != 0 && std::strstr(or1_emu_last_error(), "deadlock") != nullptr, "a divergent barrier is reported as a deadlock");
    }
    { // early exit
        std::vector<int> out(64, 0);
        int* p = out.data();
        check(launch("emu_selftest_early_exit", 1, 64, 0, {&p}), "early exit launches");
        bool ok = true;
        for (int i = 0; i < 40; i++) ok &= out[i] == 7;
        check(ok, "exited threads do not hold back __syncthreads");
    }
    { // configuration errors
        int* p = nullptr;
        void* args[] = {&p};
        check(or1_emu_launch("no_such_kernel", 1, 1, 1, 32, 1, 1, 0, args) == 1, "unknown kernel is error 1");
        check(or1_emu_launch("emu_selftest_race", 1, 1, 1, 2048, 1, 1, 0, args) == 2, "a 2048-thread block is rejected like on a GPU");
    }
    { // a block above the kernel's __launch_bounds__ (64 threads) is refused, as on a GPU; the bound counts x * y * z
        std::vector<int> out(1024, -1);
        int* p = out.data();
        std::vector<void*> args{&p};
        const void* kernel = or1_emu_find_kernel("emu_selftest_bounded");
        check(or1_emu_kernel_max_threads(kernel) == 64, "the bound is the kernel's CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK");
        check(or1_emu_kernel_max_threads(or1_emu_find_kernel("emu_selftest_race")) == 1024, "a kernel without bounds may use 1024 threads");
        check(or1_emu_launch("emu_selftest_bounded", 1, 1, 1, 8, 8, 1, 0, args.data()) == 0 && out[63] == 63, "a block of exactly the bound runs");
        int rc = or1_emu_launch("emu_selftest_bounded", 1, 1, 1, 8, 9, 1, 0, args.data());
        check(rc == 2 && contains(or1_emu_last_error(), {"emu_selftest_bounded", "block (8, 9, 1) = 72 threads", "__launch_bounds__", "64"}),
              std::string("a block above the bound is refused: ") + or1_emu_last_error());
        check(out[64] == -1, "a refused launch runs nothing");
    }
    { // dynamic shared memory above 48 KB needs CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, as on a GPU
        const char* name = "emu_selftest_dynamic_shared";
        const void* kernel = or1_emu_find_kernel(name);
        const unsigned bytes = 48 * 1024 + 16;
        int n = static_cast<int>(bytes / sizeof(float));
        std::vector<float> x(n), out(n);
        for (int i = 0; i < n; i++) x[i] = static_cast<float>(i);
        float* px = x.data();
        float* po = out.data();
        std::vector<void*> args{&px, &po, &n};
        check(or1_emu_set_max_dynamic_shared(kernel, 48 * 1024) == 0, "the attribute can be set back to the default");
        int rc = or1_emu_launch(name, 1, 1, 1, 64, 1, 1, bytes, args.data());
        check(rc == 2 && contains(or1_emu_last_error(), {name, "49168 bytes", "CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES"}),
              std::string("48 KB + 16 bytes without the attribute is refused: ") + or1_emu_last_error());
        check(or1_emu_set_max_dynamic_shared(kernel, static_cast<int>(bytes)) == 0 && or1_emu_get_max_dynamic_shared(kernel) == static_cast<int>(bytes),
              "the attribute is set");
        check(launch(name, 1, 64, bytes, args), "48 KB + 16 bytes with the attribute launches");
        bool ok = true;
        for (int i = 0; i < n; i++) ok &= out[i] == static_cast<float>(n - 1 - i);
        check(ok, "dynamic shared memory above 48 KB");
        check(or1_emu_launch(name, 1, 1, 1, 64, 1, 1, bytes + 4, args.data()) == 2 && contains(or1_emu_last_error(), {"49172 bytes", "49168 bytes"}),
              "a launch above the attribute is refused");
        check(or1_emu_set_device_arch(80) == 0 && or1_emu_max_shared_optin() == 166912, "sm_80 allows 163 KB with opt-in");
        check(or1_emu_set_max_dynamic_shared(kernel, 166913) == 2 && contains(or1_emu_last_error(), {name, "166913", "166912", "sm_80"}),
              "an attribute above sm_80's maximum is refused");
        check(or1_emu_set_max_dynamic_shared(kernel, 166912) == 0, "sm_80's maximum is allowed");
        check(or1_emu_set_device_arch(90) == 0 && or1_emu_max_shared_optin() == 232448, "sm_90 allows 227 KB with opt-in");
        check(or1_emu_set_max_dynamic_shared(kernel, 232449) == 2 && contains(or1_emu_last_error(), {name, "232449", "232448", "sm_90"}),
              "an attribute above sm_90's maximum is refused");
        check(or1_emu_set_max_dynamic_shared(kernel, 232448) == 0, "sm_90's maximum is allowed");
        check(or1_emu_set_device_arch(75) == 2, "an architecture that is not emulated is refused");
        check(or1_emu_set_max_dynamic_shared(kernel, 48 * 1024) == 0 && or1_emu_get_max_dynamic_shared(kernel) == 48 * 1024, "attribute restored");
    }
    { // warp collectives whose mask names lanes that exited or do not exist fail the launch
        std::vector<int> out(3 * 64, 0);
        int* p = out.data();
        for (int op = 0; op < 4; op++) {
            for (int reverse = 0; reverse < 2; reverse++) {
                int live = 48;
                std::vector<void*> args{&p, &live, const_cast<int*>(&op)};
                or1_emu_set_schedule(reverse);
                int rc = or1_emu_launch("emu_selftest_full_mask", 1, 1, 1, 64, 1, 1, 0, args.data());
                or1_emu_set_schedule(0);
                const char* e = or1_emu_last_error();
                bool named = op == 3 ? contains(e, {"emu_selftest_full_mask", "0x00000001", "does not name it"})
                                     : contains(e, {"emu_selftest_full_mask", "block (0, 0, 0)", "warp 1", "0xffffffff"}) &&
                                           (contains(e, {"exited lanes 16-31"}) || contains(e, {"lane 16 exits"}));
                check(rc == 4 && named, "op " + std::to_string(op) + (reverse ? " (reverse schedule)" : "") +
                                            ": a mask naming exited lanes fails: " + e);
            }
            int live = 40;
            std::vector<void*> args{&p, &live, const_cast<int*>(&op)};
            int rc = or1_emu_launch("emu_selftest_full_mask", 1, 1, 1, 40, 1, 1, 0, args.data());
            const char* e = or1_emu_last_error();
            if (op != 3)
                check(rc == 4 && contains(e, {"warp 1", "0xffffffff", "nonexistent lanes 8-31", "the block has 40 threads"}),
                      "op " + std::to_string(op) + ": a partial warp with the full mask fails: " + e);
        }
        for (int block : {64, 40}) {
            int live = 40;
            std::fill(out.begin(), out.end(), 0);
            std::vector<void*> args{&p, &live};
            check(launch("emu_selftest_live_mask", 1, block, 0, args), "a mask of the live lanes works (block " + std::to_string(block) + ")");
            bool ok = true;
            for (int t = 0; t < live; t++) {
                int lanes = std::min(32, live - (t & ~31)), lane = t & 31;
                unsigned odd = 0;
                for (int l = 1; l < lanes; l += 2) odd |= 1u << l;
                ok &= out[3 * t] == 100 && out[3 * t + 1] == static_cast<int>(odd);
                if (lane == 0) ok &= out[3 * t + 2] == lanes * (lanes - 1) / 2;
            }
            check(ok, "broadcast, ballot and a guarded reduction over a partial mask (block " + std::to_string(block) + ")");
        }
    }
    std::printf("%d passed, %d failed\n", checks - failures, failures);
    return failures == 0 ? 0 : 1;
}

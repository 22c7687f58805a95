// Implementation detail of the Tensor target (read through Sources/Tensor/BLAS.swift only):
// what the CPU offers (cpuid, with the operating system's support for the wide registers) and
// switching a DYNAMIC_ARCH OpenBLAS to another of its kernel sets in the running process.
#pragma once
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

enum {
    DIFFUSE_CPU_AVX = 1 << 0,
    DIFFUSE_CPU_AVX2 = 1 << 1,
    DIFFUSE_CPU_FMA = 1 << 2,
    DIFFUSE_CPU_AVX512F = 1 << 3,
    DIFFUSE_CPU_AVX512BW = 1 << 4,
    DIFFUSE_CPU_AVX512DQ = 1 << 5,
    DIFFUSE_CPU_AVX512VL = 1 << 6,
    DIFFUSE_CPU_AVX512BF16 = 1 << 7,
};

typedef struct {
    char vendor[13];  // "GenuineIntel", "AuthenticAMD", ...
    char brand[49];   // "Intel(R) Xeon(R) Processor", as /proc/cpuinfo's "model name"
    int family, model, stepping;  // as /proc/cpuinfo shows them (extended fields folded in)
    unsigned features;  // DIFFUSE_CPU_* bits the CPU has *and* the OS saves the registers of
} diffuse_cpu_info;

/// cpuid leaves 0, 1, 7.0, 7.1 and 0x80000002-4; zeroed on other architectures.
static inline diffuse_cpu_info diffuse_cpu_read(void) {
    diffuse_cpu_info info;
    memset(&info, 0, sizeof info);
#if defined(__x86_64__) || defined(__i386__)
    unsigned a = 0, b = 0, c = 0, d = 0, max = 0;
    if (!__get_cpuid(0, &max, &b, &c, &d)) return info;
    memcpy(info.vendor, &b, 4); memcpy(info.vendor + 4, &d, 4); memcpy(info.vendor + 8, &c, 4);
    __get_cpuid(1, &a, &b, &c, &d);
    unsigned baseFamily = (a >> 8) & 0xf, baseModel = (a >> 4) & 0xf;
    info.family = (int)(baseFamily == 0xf ? baseFamily + ((a >> 20) & 0xff) : baseFamily);
    info.model = (int)(baseFamily == 0x6 || baseFamily == 0xf ? baseModel + (((a >> 16) & 0xf) << 4) : baseModel);
    info.stepping = (int)(a & 0xf);
    unsigned ecx1 = c;
    // XCR0 says which register states the OS saves: bits 1-2 for AVX (XMM, YMM), 5-7 for
    // AVX-512 (opmask, upper ZMM halves, ZMM16-31). Without them the instructions fault.
    unsigned long long xcr0 = 0;
    if (ecx1 & (1u << 27)) {  // OSXSAVE
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((unsigned long long)hi << 32) | lo;
    }
    int osAVX = (xcr0 & 0x6) == 0x6, osAVX512 = (xcr0 & 0xe6) == 0xe6;
    if (osAVX && (ecx1 & (1u << 28))) info.features |= DIFFUSE_CPU_AVX;
    if (osAVX && (ecx1 & (1u << 12))) info.features |= DIFFUSE_CPU_FMA;
    if (max >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (osAVX && (b & (1u << 5))) info.features |= DIFFUSE_CPU_AVX2;
        if (osAVX512) {
            if (b & (1u << 16)) info.features |= DIFFUSE_CPU_AVX512F;
            if (b & (1u << 17)) info.features |= DIFFUSE_CPU_AVX512DQ;
            if (b & (1u << 30)) info.features |= DIFFUSE_CPU_AVX512BW;
            if (b & (1u << 31)) info.features |= DIFFUSE_CPU_AVX512VL;
            __cpuid_count(7, 1, a, b, c, d);
            if (a & (1u << 5)) info.features |= DIFFUSE_CPU_AVX512BF16;
        }
    }
    __get_cpuid(0x80000000, &max, &b, &c, &d);
    if (max >= 0x80000004) {
        unsigned *p = (unsigned *)info.brand;
        for (unsigned leaf = 0x80000002; leaf <= 0x80000004; leaf++, p += 4) __get_cpuid(leaf, p, p + 1, p + 2, p + 3);
    }
#endif
    return info;
}

/// Whether the loaded OpenBLAS holds the kernel set `symbol` ("gotoblas_COOPERLAKE", ...).
static inline int diffuse_openblas_has(const char *symbol) { return dlsym(RTLD_DEFAULT, symbol) != NULL; }

/// Re-runs OpenBLAS' start-up choice of kernel set with OPENBLAS_CORETYPE = `core` (NULL: its
/// own cpuid detection), then puts the variable back as it was, so child processes choose for
/// themselves. Returns 0, or -1 when the library cannot switch (not a DYNAMIC_ARCH OpenBLAS).
/// No BLAS call may run meanwhile.
static inline int diffuse_openblas_load_core(const char *core) {
    void (*quit)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit");
    void (*init)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init");
    if (!quit || !init) return -1;
    const char *was = getenv("OPENBLAS_CORETYPE");
    char *saved = was ? strdup(was) : NULL;
    if (core) setenv("OPENBLAS_CORETYPE", core, 1); else unsetenv("OPENBLAS_CORETYPE");
    quit();
    init();
    if (saved) { setenv("OPENBLAS_CORETYPE", saved, 1); free(saved); } else unsetenv("OPENBLAS_CORETYPE");
    return 0;
}

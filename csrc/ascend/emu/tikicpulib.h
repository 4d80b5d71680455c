// Drop-in for CANN's CPU-debug driver header: a driver written for tikicpulib
// (GmAlloc, SetKernelMode, ICPU_RUN_KF) builds unchanged against the emulator.
#pragma once

#include <cstddef>

#include "kernel_operator.h"

namespace AscendC {

inline void* GmAlloc(size_t size) {
  return npu_ops_emu::GmAllocImpl(size);
}
inline void GmFree(void* ptr) {
  npu_ops_emu::GmFreeImpl(ptr);
}
// Only vector (AIV) kernels are emulated; other modes are accepted so drivers build unchanged.
inline void SetKernelMode(KernelMode) {}

}  // namespace AscendC

// Runs `func` on `blockdim` blocks (seeded shuffled order, NPU_OPS_EMU_SEED). On a broken rule it
// prints the error and exits with status 1; on success it prints the launch counters.
#define ICPU_RUN_KF(func, blockdim, ...) \
  npu_ops_emu::DriverRun(#func, static_cast<uint32_t>(blockdim), [&]() { func(__VA_ARGS__); })

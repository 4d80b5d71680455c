// Positive sample: a driver in CANN's CPU-debug style (tikicpulib.h, GmAlloc, ICPU_RUN_KF)
// around the double-buffered vector add. Must pass check.sh.
#include <cstdint>
#include <cstring>

#include "tikicpulib.h"
#include "vector_add_ok.cpp"

int main() {
  constexpr uint32_t n = 8 * 1024;
  constexpr size_t bytes = n * sizeof(float);
  uint8_t* x = static_cast<uint8_t*>(AscendC::GmAlloc(bytes));
  uint8_t* y = static_cast<uint8_t*>(AscendC::GmAlloc(bytes));
  uint8_t* z = static_cast<uint8_t*>(AscendC::GmAlloc(bytes));
  std::memset(x, 0, bytes);
  std::memset(y, 0, bytes);
  AscendC::SetKernelMode(KernelMode::AIV_MODE);
  ICPU_RUN_KF(vector_add_ok, 8, x, y, z);
  AscendC::GmFree(x);
  AscendC::GmFree(y);
  AscendC::GmFree(z);
  return 0;
}

// Core state of the intrinsic model: vector mask / mask mode, the rule-violation log, the
// local-buffer ranges the API registers (AscendCBufAbsAddr) and the CPU-debug check hooks.
#ifndef NPU_OPS_IM_CORE_H
#define NPU_OPS_IM_CORE_H

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace npu_im {

struct MaskState {
  uint64_t hi = ~0ull, lo = ~0ull;
  bool counter = false;  // set_mask_count: lo is an element count
};
inline MaskState& Mask() {
  static MaskState m;
  return m;
}

struct Counters {
  uint64_t vec = 0, dma = 0, setFlag = 0, waitFlag = 0, barrier = 0;
};
inline Counters& Count() {
  static Counters c;
  return c;
}

inline std::vector<std::string>& Violations() {
  static std::vector<std::string> v;
  return v;
}
inline int64_t& CurBlock() {
  static int64_t b = 0;
  return b;
}
inline void Violation(const std::string& what) {
  Violations().push_back("block " + std::to_string(CurBlock()) + ": " + what);
}

struct LocalRange {
  uint64_t base = 0, len = 0;
};
// The local buffers (UB, L1, ...) as TPipe::Init registers them; index = Hardware value.
inline LocalRange* Locals() {
  static LocalRange r[16];
  return r;
}

}  // namespace npu_im

// CPU-debug bookkeeping hooks of the closed library: the model only needs the buffer ranges.
inline void AscendCBufAbsAddr(uint8_t hw, uint64_t addr, uint64_t len) {
  if (hw < 16) npu_im::Locals()[hw] = {addr, len};
}
#define NPU_OPS_IM_HOOK(name) \
  template <typename... A>    \
  inline void name(A...) {}
NPU_OPS_IM_HOOK(AscendCBlockBegin)
NPU_OPS_IM_HOOK(AscendCBlockEnd)
NPU_OPS_IM_HOOK(AscendCBufAlloc)
NPU_OPS_IM_HOOK(AscendCBufDeque)
NPU_OPS_IM_HOOK(AscendCBufEnque)
NPU_OPS_IM_HOOK(AscendCBufFree)
NPU_OPS_IM_HOOK(AscendCBufGet)
NPU_OPS_IM_HOOK(AscendCBufInit)
NPU_OPS_IM_HOOK(AscendCKernelBegin)
NPU_OPS_IM_HOOK(AscendCKernelEnd)
NPU_OPS_IM_HOOK(AscendCQueCreate)
NPU_OPS_IM_HOOK(AscendCRecordPoolHierarchy)
NPU_OPS_IM_HOOK(AscendCTBufPoolInit)
NPU_OPS_IM_HOOK(AscendCTBufPoolResetCheck)
NPU_OPS_IM_HOOK(AscendCUpdateTbufPoolStatus)
#undef NPU_OPS_IM_HOOK

// Mask and control registers.
inline void set_vector_mask(uint64_t hi, uint64_t lo) {
  npu_im::Mask().hi = hi, npu_im::Mask().lo = lo;
}
inline void set_mask_count() {
  npu_im::Mask().counter = true;
}
// Scalar bit helpers (event-id pools use them): first zero bit, set / clear one bit.
inline int64_t sff0(uint64_t x) {
  return ~x ? __builtin_ctzll(~x) : -1;
}
inline uint64_t sbitset1(uint64_t x, int64_t i) {
  return x | (1ull << i);
}
inline uint64_t sbitset0(uint64_t x, int64_t i) {
  return x & ~(1ull << i);
}
// Atomic mode register: only "none" is modelled (DMA stores overwrite).
inline void set_atomic_none() {}
inline void set_mask_norm() {
  npu_im::Mask().counter = false;
}

#endif  // NPU_OPS_IM_CORE_H

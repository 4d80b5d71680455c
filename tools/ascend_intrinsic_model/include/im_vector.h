// Vector binary ops (vadd family): 256-byte repeats of 8 blocks of 32 bytes; lane i of a repeat
// is active if mask bit i is set (normal mode), or if it is below the remaining element count
// (counter mode, where the repeat argument is ignored). Strides in 32-byte blocks.
#ifndef NPU_OPS_IM_VECTOR_H
#define NPU_OPS_IM_VECTOR_H

#include "im_sync.h"

namespace npu_im {
template <typename T, typename Op>
inline void Binary(T* dst, T* s0, T* s1, uint8_t repeat, uint16_t db, uint16_t b0, uint16_t b1, uint16_t dr,
                   uint16_t r0, uint16_t r1, Op op, const char* what) {
  constexpr int perBlk = 32 / sizeof(T), perRep = 256 / sizeof(T);
  Count().vec++;
  Issue(PIPE_V);
  MaskState m = Mask();
  uint64_t reps = m.counter ? (m.lo + perRep - 1) / perRep : repeat;
  for (uint64_t r = 0; r < reps; ++r) {
    for (int l = 0; l < perRep; ++l) {
      bool on = m.counter ? r * perRep + l < m.lo : ((l < 64 ? m.lo >> l : m.hi >> (l - 64)) & 1);
      if (!on) continue;
      int blk = l / perBlk, e = l % perBlk;
      T* a = s0 + (r * r0 + blk * b0) * perBlk + e;
      T* b = s1 + (r * r1 + blk * b1) * perBlk + e;
      T* d = dst + (r * dr + blk * db) * perBlk + e;
      Access(PIPE_V, a, sizeof(T), false, what);
      Access(PIPE_V, b, sizeof(T), false, what);
      Access(PIPE_V, d, sizeof(T), true, what);
      *d = op(*a, *b);
    }
  }
}
}  // namespace npu_im

#define NPU_OPS_IM_BINARY(name, expr)                                                                              \
  template <typename T>                                                                                            \
  inline void name(T* d, T* a, T* b, uint8_t rep, uint16_t db, uint16_t b0, uint16_t b1, uint16_t dr, uint16_t r0, \
                   uint16_t r1) {                                                                                  \
    npu_im::Binary(d, a, b, rep, db, b0, b1, dr, r0, r1, [](T x, T y) { return static_cast<T>(expr); }, #name);    \
  }
NPU_OPS_IM_BINARY(vadd, float(x) + float(y))
NPU_OPS_IM_BINARY(vsub, float(x) - float(y))
NPU_OPS_IM_BINARY(vmul, float(x) * float(y))
#undef NPU_OPS_IM_BINARY

#endif  // NPU_OPS_IM_VECTOR_H

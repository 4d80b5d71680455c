// DMA between GM and UB: nBurst bursts of lenBurst 32-byte blocks; srcGap / dstGap are the
// 32-byte blocks skipped between bursts on each side.
#ifndef NPU_OPS_IM_DMA_H
#define NPU_OPS_IM_DMA_H

#include <cstring>

#include "im_sync.h"

namespace npu_im {
inline void Burst(int pipe, uint8_t* dst, const uint8_t* src, uint16_t n, uint16_t len, uint16_t sg, uint16_t dg,
                  const char* what) {
  Count().dma++;
  Issue(pipe);
  for (uint16_t b = 0; b < n; ++b) {
    const uint8_t* s = src + uint64_t(b) * (len + sg) * 32;
    uint8_t* d = dst + uint64_t(b) * (len + dg) * 32;
    Access(pipe, s, uint64_t(len) * 32, false, what);
    Access(pipe, d, uint64_t(len) * 32, true, what);
    std::memmove(d, s, uint64_t(len) * 32);
  }
}
}  // namespace npu_im

template <typename D, typename S>
inline void copy_gm_to_ubuf(D* dst, S* src, uint8_t, uint16_t n, uint16_t len, uint16_t sg, uint16_t dg) {
  npu_im::Burst(PIPE_MTE2, (uint8_t*)dst, (const uint8_t*)src, n, len, sg, dg, "copy_gm_to_ubuf");
}
template <typename D, typename S>
inline void copy_ubuf_to_gm(D* dst, S* src, uint8_t, uint16_t n, uint16_t len, uint16_t sg, uint16_t dg) {
  npu_im::Burst(PIPE_MTE3, (uint8_t*)dst, (const uint8_t*)src, n, len, sg, dg, "copy_ubuf_to_gm");
}

#endif  // NPU_OPS_IM_DMA_H

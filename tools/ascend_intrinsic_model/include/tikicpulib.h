// npu_ops' stand-in for CANN's tikicpulib.h: ICPU_RUN_KF runs the blocks one after another in
// this process (no fork), and prints the intrinsic model's counters and rule violations.
#ifndef NPU_OPS_IM_TIKICPULIB_H
#define NPU_OPS_IM_TIKICPULIB_H
#include "kernel_operator.h"

#define ICPU_RUN_KF(func, numBlocks, ...)                                                             \
  do {                                                                                                \
    block_num = (numBlocks);                                                                          \
    for (int64_t b = 0; b < (int64_t)(numBlocks); ++b) {                                              \
      block_idx = b;                                                                                  \
      npu_im::CurBlock() = b;                                                                         \
      func(__VA_ARGS__);                                                                              \
      npu_im::EndBlock();                                                                             \
    }                                                                                                 \
    auto& c = npu_im::Count();                                                                        \
    std::printf(                                                                                      \
        "[intrinsic-model] %s: %llu vector, %llu dma, %llu set_flag, %llu wait_flag, %llu barrier, "  \
        "%zu violations\n",                                                                           \
        #func, (unsigned long long)c.vec, (unsigned long long)c.dma, (unsigned long long)c.setFlag,   \
        (unsigned long long)c.waitFlag, (unsigned long long)c.barrier, npu_im::Violations().size());  \
    for (auto& v : npu_im::Violations()) std::printf("[intrinsic-model] violation: %s\n", v.c_str()); \
  } while (0)
#endif

// Host tiling of the MSDA backward AscendC kernels (csrc/ascend/kernels/msda_backward.h). Plain
// C++17, no torch, no AscendC: shared by the NPU launcher and the emulator op
// (csrc/ascend/sim/msda_backward_sim.cpp), so both launch the kernels identically.
//
// Launch contract:
//  * entry npu_ops_msda_bwd_<dtype> for kMsdaBwdCodesign, npu_ops_msda_bwd_naive_<dtype> for
//    kMsdaBwdNaive; exactly tiling.blockNum blocks (at most the device's vector core count:
//    the kernel uses SyncAll);
//  * all tensors contiguous in the shapes of msda_backward_tiling_data.h, in the kernel dtype;
//  * workspace: an fp32 GM buffer of tiling.workspaceBytes bytes for fp16/bf16 (uninitialised
//    is fine: the kernel zeroes it); for fp32 pass any valid GM address (e.g. grad_value);
//  * tiling: the bytes of msda_backward_tiling_blob() in a GM buffer;
//  * nothing needs zero-filling on the host; empty problems (a zero dimension) launch nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "msda_backward_tiling_data.h"

namespace npu_ops {
namespace ascend {

struct MsdaBwdLevelShape {
  uint64_t height, width, start;
};

struct MsdaBwdProblem {
  uint64_t batch = 0, num_keys = 0, num_queries = 0;
  uint32_t heads = 0, channels = 0, points = 0;
  std::vector<MsdaBwdLevelShape> levels;
};

// UB bytes the kernel allocates for this problem and launch shape (mirrors its InitBuffer calls).
uint64_t msda_backward_ub_bytes(const MsdaBwdProblem& p, MsdaBwdDtype dtype, MsdaBwdDesign design, uint32_t tile_rows,
                                uint32_t group, uint32_t priv_rows, uint32_t win_rows = 0);

// Fills the tiling and the per-level table. ub_bytes: the UB budget (188160 on dav-2201; tests
// may pass less). Fails (false, *reason) for empty or untileable problems, naming the limit.
bool compute_msda_backward_tiling(const MsdaBwdProblem& p, MsdaBwdDtype dtype, MsdaBwdDesign design, bool deterministic,
                                  uint32_t block_num, uint32_t ub_bytes, MsdaBwdTiling* out,
                                  std::vector<MsdaBwdLevel>* levels, std::string* reason);

// The kernel's tiling argument: the header followed by the level entries.
std::vector<uint8_t> msda_backward_tiling_blob(const MsdaBwdTiling& t, const std::vector<MsdaBwdLevel>& levels);

}  // namespace ascend
}  // namespace npu_ops

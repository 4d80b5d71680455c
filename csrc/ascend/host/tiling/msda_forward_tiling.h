// Host tiling of the MSDA forward AscendC kernels (csrc/ascend/kernels/msda_forward.h). Plain
// C++17: no torch, no AscendC. Shared by the NPU launcher and the emulator path
// (csrc/ascend/sim/msda_forward_sim.cpp), so both launch the kernels identically.
//
// Launch contract:
//  * entry npu_ops_msda_fwd_<dtype> for kMsdaCodesign, npu_ops_msda_fwd_naive_<dtype> for
//    kMsdaNaive; exactly tiling.blockNum blocks (block_num clamped to [1, 65535]; pass the
//    runtime's vector core count on an NPU);
//  * arguments (value, sampling_locations, attention_weights, output, tiling): the four tensors
//    contiguous in the layouts of msda_forward_tiling_data.h, all of one dtype; the output
//    needs no initialisation (every element is written once); the tiling is a GM buffer of
//    sizeof(MsdaForwardTiling) bytes;
//  * spatial shapes and level starts travel inside the tiling (the kernels never read the
//    index tensors).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "chorus_tiling_data.h"
#include "msda_forward_tiling_data.h"

namespace npu_ops {
namespace ascend {

struct MsdaLevelShape {
  uint64_t height = 0;
  uint64_t width = 0;
  uint64_t start = 0;  // level_start_index
};

struct MsdaForwardShape {
  uint64_t batch = 0;
  uint64_t num_keys = 0;
  uint64_t num_queries = 0;
  uint64_t heads = 0;
  uint64_t channels = 0;
  uint64_t points = 0;
  std::vector<MsdaLevelShape> levels;
};

// Tiling for the given design. ub_bytes: the UB budget (kChorusUbBytes on hardware; tests may pass
// less). Fails (false, *reason names the offending value and the limit) for an empty problem
// (launch nothing instead), more than kMsdaMaxLevels levels, a level of more than 2^24 pixels,
// inconsistent level starts, or a shape whose smallest tile does not fit the UB budget.
bool compute_msda_forward_tiling(const MsdaForwardShape& shape, MsdaDesign design, ChorusDtype dtype,
                                 uint32_t block_num, uint32_t ub_bytes, MsdaForwardTiling* out, std::string* reason);

// UB bytes the kernel of `design` allocates for a tiling's parameters (what compute_* budgets).
uint64_t msda_forward_ub_bytes(const MsdaForwardTiling& t);

const char* msda_design_name(MsdaDesign design);

}  // namespace ascend
}  // namespace npu_ops

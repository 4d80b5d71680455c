// Host tiling of the Chorus AscendC kernels (masked_blend, amplified_softmax). Plain C++17:
// no torch, no AscendC. Shared by the NPU launchers (csrc/ascend/host/*_npu.cpp) and the
// emulator path (csrc/ascend/sim/chorus_sim.cpp), so both launch the kernels identically.
//
// Every function returns false and sets *reason (a complete sentence naming the offending
// value) when the problem cannot be tiled; the caller raises it as an error.
//
// Launch contract (both ops):
//  * launch exactly tiling.blockNum blocks (the block_num passed in, clamped to [1, 65535];
//    pass the runtime's vector core count on an NPU);
//  * the last kernel argument is a GM buffer holding the tiling struct (sizeof bytes);
//  * all tensors contiguous, in the canonical shapes described in chorus_tiling_data.h;
//  * backward: grad_mask / grad_alpha are accumulated atomically: zero-fill them first.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "chorus_tiling_data.h"

namespace npu_ops {
namespace ascend {

// Bytes per element of a ChorusDtype (4 or 2).
uint32_t chorus_dtype_bytes(ChorusDtype dtype);
const char* chorus_dtype_name(ChorusDtype dtype);

// ---------------------------------------------------------------------------------------------
// masked_blend

// How the host lays out a masked_blend problem for the kernel.
struct MaskedBlendCanon {
  uint64_t outer = 1, mid = 1, inner = 1;  // data viewed as [outer, mid, inner]
  // The mask's broadcast pattern is not [outer, 1, inner] (after dropping size-1 dims, the
  // broadcast dims of the mask do not form one contiguous run). The host must then expand the
  // mask to the full data shape (mask.expand(data_shape).contiguous()); outer = mid = 1 and
  // inner = numel in that case, and the backward's grad_mask comes back full-size: the host
  // reduces it (sum over the broadcast dims) to the mask's shape.
  bool expand_mask = false;
};

// data_shape: shape of fresh/cached. mask_shape: must broadcast to data_shape (numpy rules,
// right-aligned, rank <= data rank). Zero-size data is accepted (numel 0: launch nothing).
bool canonicalize_masked_blend(const std::vector<int64_t>& data_shape, const std::vector<int64_t>& mask_shape,
                               MaskedBlendCanon* out, std::string* reason);

// Tiling for npu_ops_masked_blend_{fwd,bwd}_<dtype>_<fmask|u8mask>. ub_bytes: the UB budget
// (kChorusUbBytes on hardware; tests may pass less). Requires outer * mid * inner >= 1.
bool compute_masked_blend_tiling(uint64_t outer, uint64_t mid, uint64_t inner, ChorusDtype dtype,
                                 MaskedBlendMaskKind mask_kind, bool backward, uint32_t block_num, uint32_t ub_bytes,
                                 MaskedBlendTiling* out, std::string* reason);

// ---------------------------------------------------------------------------------------------
// amplified_softmax

// How the host lays out alpha for the kernel: scores [..., L] -> [rows, L]; alpha (broadcast
// to scores) -> [groups, L] where row r uses alpha row r / (rows / groups).
struct AmplifiedSoftmaxCanon {
  uint64_t rows = 0, groups = 1, cols = 0;
  // The shape (rank of scores) alpha must be expanded to before viewing it as [groups, cols]:
  // scores' leading dims up to the last one alpha varies along, 1 after it, cols last.
  std::vector<int64_t> alpha_expand_shape;
  // alpha is not already of alpha_expand_shape (after right-aligning): the host expands and
  // makes it contiguous, and reduces grad_alpha [groups, cols] back to alpha's shape (sum over
  // the expanded dims).
  bool expand_alpha = false;
};

bool canonicalize_amplified_softmax(const std::vector<int64_t>& scores_shape, const std::vector<int64_t>& alpha_shape,
                                    AmplifiedSoftmaxCanon* out, std::string* reason);

// Largest row length L (cols) the kernel can hold in UB for this dtype / mode / pass.
uint32_t amplified_softmax_max_cols(ChorusDtype dtype, bool renormalize, bool backward, uint32_t ub_bytes);

// Tiling for npu_ops_amplified_softmax_{fwd,bwd}_<dtype>. Fails with a reason naming the
// maximum L when a row does not fit UB. Requires rows >= 1, cols >= 1, rows % groups == 0.
bool compute_amplified_softmax_tiling(uint64_t rows, uint64_t groups, uint32_t cols, float scale, bool renormalize,
                                      ChorusDtype dtype, bool backward, uint32_t block_num, uint32_t ub_bytes,
                                      AmplifiedSoftmaxTiling* out, std::string* reason);

}  // namespace ascend
}  // namespace npu_ops

// npu_ops_sim ops for the MSDA forward AscendC kernels (csrc/ascend/kernels/msda_forward.cpp):
// check the inputs with the checks every msda backend uses, lay them out as the NPU launcher does
// (shared tiling, csrc/ascend/host/tiling/msda_forward_tiling.h), and run the kernel entries on
// CPU tensors under the AscendC emulator. python/npu_ops/ascend_sim/msda_forward.py wraps them.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/msda_checks.h"
#include "emu_runtime.h"
#include "host/tiling/msda_forward_tiling.h"

using KernelMsdaFwd = void (*)(uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*);

#define NPU_OPS_DECLARE_MSDA_FWD(SUFFIX)                                                       \
  extern "C" void npu_ops_msda_fwd_##SUFFIX(uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*); \
  extern "C" void npu_ops_msda_fwd_naive_##SUFFIX(uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*);
NPU_OPS_DECLARE_MSDA_FWD(fp32)
NPU_OPS_DECLARE_MSDA_FWD(fp16)
NPU_OPS_DECLARE_MSDA_FWD(bf16)
#undef NPU_OPS_DECLARE_MSDA_FWD

namespace {

namespace asc = npu_ops::ascend;
using npu_ops_emu::GmBuffer;

constexpr const char* kOp = "npu_ops_sim::msda_forward";

asc::MsdaDesign parse_design(const std::string& design) {
  if (design == "codesign") return asc::kMsdaCodesign;
  if (design == "naive") return asc::kMsdaNaive;
  TORCH_CHECK(false, kOp, ": design must be 'codesign' or 'naive', got '", design, "'");
}

asc::ChorusDtype parse_dtype(const std::string& dtype) {
  if (dtype == "float32") return asc::kChorusFloat32;
  if (dtype == "float16") return asc::kChorusFloat16;
  if (dtype == "bfloat16") return asc::kChorusBFloat16;
  TORCH_CHECK(false, kOp, ": dtype must be 'float32', 'float16' or 'bfloat16', got '", dtype, "'");
}

KernelMsdaFwd kernel_for(asc::ChorusDtype d, asc::MsdaDesign design) {
  const bool naive = design == asc::kMsdaNaive;
  switch (d) {
    case asc::kChorusFloat32: return naive ? npu_ops_msda_fwd_naive_fp32 : npu_ops_msda_fwd_fp32;
    case asc::kChorusFloat16: return naive ? npu_ops_msda_fwd_naive_fp16 : npu_ops_msda_fwd_fp16;
    case asc::kChorusBFloat16: return naive ? npu_ops_msda_fwd_naive_bf16 : npu_ops_msda_fwd_bf16;
  }
  return nullptr;
}

uint8_t* ptr(const at::Tensor& t) {
  return static_cast<uint8_t*>(t.data_ptr());
}

GmBuffer gm(const at::Tensor& t, const char* name) {
  return GmBuffer{t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size(), name};
}

asc::MsdaForwardTiling tiling_or_throw(const asc::MsdaForwardShape& s, asc::MsdaDesign design, asc::ChorusDtype d,
                                       uint32_t blocks, uint32_t ub_bytes) {
  asc::MsdaForwardTiling t;
  std::string reason;
  TORCH_CHECK(asc::compute_msda_forward_tiling(s, design, d, blocks, ub_bytes, &t, &reason), reason);
  return t;
}

at::Tensor msda_forward_sim(const at::Tensor& value, const at::Tensor& spatial_shapes,
                            const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                            const at::Tensor& attention_weights, int64_t block_num, int64_t seed,
                            const std::string& design_name) {
  TORCH_CHECK(block_num >= 1 && block_num <= 65535, kOp, ": block_num must be in [1, 65535], got ", block_num);
  const asc::MsdaDesign design = parse_design(design_name);
  for (const auto& [t, name] : {std::pair<const at::Tensor&, const char*>{value, "value"},
                                {sampling_locations, "sampling_locations"},
                                {attention_weights, "attention_weights"}}) {
    TORCH_CHECK(t.device().is_cpu(), kOp, ": ", name, " must be a CPU tensor (the emulator runs on CPU), got ",
                t.device());
  }
  npu_ops::MsdaProblem prob =
      npu_ops::msda_check_shapes(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  asc::ChorusDtype dtype;
  switch (value.scalar_type()) {
    case at::kFloat: dtype = asc::kChorusFloat32; break;
    case at::kHalf: dtype = asc::kChorusFloat16; break;
    case at::kBFloat16: dtype = asc::kChorusBFloat16; break;
    default:
      TORCH_CHECK(false, kOp, ": value must be float32, float16 or bfloat16 for the AscendC kernel, got ",
                  value.scalar_type(), " (float64 is a CPU-only dtype of npu_ops.msda)");
  }
  npu_ops::msda_check_levels(prob, spatial_shapes, level_start_index);
  at::Tensor out = at::empty({prob.batch, prob.num_queries, prob.num_heads * prob.channels}, value.options());
  if (out.numel() == 0) return out;
  asc::MsdaForwardShape s;
  s.batch = prob.batch;
  s.num_keys = prob.num_keys;
  s.num_queries = prob.num_queries;
  s.heads = prob.num_heads;
  s.channels = prob.channels;
  s.points = prob.num_points;
  if (prob.num_points == 0) return out.zero_();  // no point contributes
  for (const auto& lv : prob.levels)
    s.levels.push_back(
        {static_cast<uint64_t>(lv.height), static_cast<uint64_t>(lv.width), static_cast<uint64_t>(lv.start)});
  const asc::MsdaForwardTiling t =
      tiling_or_throw(s, design, dtype, static_cast<uint32_t>(block_num), asc::kChorusUbBytes);
  at::Tensor v = value.contiguous(), loc = sampling_locations.contiguous(), attn = attention_weights.contiguous();
  at::Tensor tiling = at::empty({static_cast<int64_t>(sizeof(t))}, at::TensorOptions().dtype(at::kByte));
  std::memcpy(tiling.data_ptr(), &t, sizeof(t));
  npu_ops_emu::Run(design == asc::kMsdaNaive ? "npu_ops_msda_fwd_naive" : "npu_ops_msda_fwd", t.blockNum,
                   static_cast<uint64_t>(seed),
                   {gm(v, "value"), gm(loc, "sampling_locations"), gm(attn, "attention_weights"), gm(out, "output"),
                    gm(tiling, "tiling")},
                   kernel_for(dtype, design), ptr(v), ptr(loc), ptr(attn), ptr(out), ptr(tiling));
  return out;
}

// The host tiling alone, for property tests: [tileQ, pointGroup, tileN, chunkElems, cPad,
// locRowBytes, attnRowBytes, residentBytes, numResident, hasDmaLevels, bufferNum, ubBytes, blockNum,
// windowPixels, windowUbOffset, levelUbOffset[0..L) (-1: DMA level)].
std::vector<int64_t> msda_forward_tiling_sim(int64_t batch, int64_t num_queries, int64_t heads, int64_t channels,
                                             int64_t points, const std::vector<int64_t>& level_hw,
                                             const std::string& dtype_name, const std::string& design_name,
                                             int64_t block_num, int64_t ub_bytes) {
  TORCH_CHECK(level_hw.size() % 2 == 0, kOp, " tiling: level_hw must hold (h, w) pairs");
  TORCH_CHECK(batch >= 0 && num_queries >= 0 && heads >= 0 && channels >= 0 && points >= 0 && block_num >= 1 &&
                  ub_bytes > 0 && ub_bytes <= UINT32_MAX,
              kOp, " tiling: negative size or bad block_num / ub_bytes");
  asc::MsdaForwardShape s;
  s.batch = batch;
  s.num_queries = num_queries;
  s.heads = heads;
  s.channels = channels;
  s.points = points;
  uint64_t start = 0;
  for (size_t i = 0; i < level_hw.size(); i += 2) {
    TORCH_CHECK(level_hw[i] > 0 && level_hw[i + 1] > 0, kOp, " tiling: level sizes must be positive");
    s.levels.push_back({static_cast<uint64_t>(level_hw[i]), static_cast<uint64_t>(level_hw[i + 1]), start});
    start += static_cast<uint64_t>(level_hw[i] * level_hw[i + 1]);
  }
  s.num_keys = start;
  const asc::MsdaForwardTiling t =
      tiling_or_throw(s, parse_design(design_name), parse_dtype(dtype_name),
                      static_cast<uint32_t>(std::min<int64_t>(block_num, 65535)), static_cast<uint32_t>(ub_bytes));
  std::vector<int64_t> r = {t.tileQ,       t.pointGroup,   t.tileN,         t.chunkElems,   t.cPad,
                            t.locRowBytes, t.attnRowBytes, t.residentBytes, t.numResident,  t.hasDmaLevels,
                            t.bufferNum,   t.ubBytes,      t.blockNum,      t.windowPixels, t.windowUbOffset};
  for (uint32_t l = 0; l < t.levels; ++l)
    r.push_back(t.levelUbOffset[l] == asc::kMsdaNotResident ? -1 : static_cast<int64_t>(t.levelUbOffset[l]));
  return r;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(npu_ops_sim, m) {
  m.def(
      "msda_forward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, Tensor sampling_locations, "
      "Tensor attention_weights, int block_num, int seed, str design) -> Tensor");
  m.def(
      "msda_forward_tiling(int batch, int num_queries, int heads, int channels, int points, int[] level_hw, "
      "str dtype, str design, int block_num, int ub_bytes) -> int[]");
}

TORCH_LIBRARY_IMPL(npu_ops_sim, CPU, m) {
  m.impl("msda_forward", &msda_forward_sim);
}

TORCH_LIBRARY_IMPL(npu_ops_sim, CompositeExplicitAutograd, m) {
  m.impl("msda_forward_tiling", &msda_forward_tiling_sim);
}

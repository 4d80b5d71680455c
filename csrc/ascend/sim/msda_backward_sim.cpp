// npu_ops_sim::msda_backward: checks the inputs, lays them out as the NPU launcher does (shared
// tiling, csrc/ascend/host/tiling/msda_backward_tiling.h) and runs the MSDA backward kernel
// entries (csrc/ascend/kernels/msda_backward.cpp) on CPU tensors under the AscendC emulator.
// python/npu_ops/ascend_sim/msda_backward.py wraps it.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "emu_runtime.h"
#include "host/tiling/msda_backward_tiling.h"

#define NPU_OPS_DECLARE_MSDA_BWD(NAME) \
  extern "C" void NAME(uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*);
NPU_OPS_DECLARE_MSDA_BWD(npu_ops_msda_bwd_fp32)
NPU_OPS_DECLARE_MSDA_BWD(npu_ops_msda_bwd_fp16)
NPU_OPS_DECLARE_MSDA_BWD(npu_ops_msda_bwd_bf16)
NPU_OPS_DECLARE_MSDA_BWD(npu_ops_msda_bwd_naive_fp32)
NPU_OPS_DECLARE_MSDA_BWD(npu_ops_msda_bwd_naive_fp16)
NPU_OPS_DECLARE_MSDA_BWD(npu_ops_msda_bwd_naive_bf16)
#undef NPU_OPS_DECLARE_MSDA_BWD

namespace {

namespace asc = npu_ops::ascend;
using Kernel = void (*)(uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*);
constexpr const char* kOp = "npu_ops_sim::msda_backward";

Kernel pick_kernel(asc::MsdaBwdDtype d, asc::MsdaBwdDesign design) {
  const bool co = design == asc::kMsdaBwdCodesign;
  switch (d) {
    case asc::kMsdaBwdFloat32: return co ? npu_ops_msda_bwd_fp32 : npu_ops_msda_bwd_naive_fp32;
    case asc::kMsdaBwdFloat16: return co ? npu_ops_msda_bwd_fp16 : npu_ops_msda_bwd_naive_fp16;
    case asc::kMsdaBwdBFloat16: return co ? npu_ops_msda_bwd_bf16 : npu_ops_msda_bwd_naive_bf16;
  }
  return nullptr;
}

uint8_t* ptr(const at::Tensor& t) {
  return static_cast<uint8_t*>(t.data_ptr());
}

npu_ops_emu::GmBuffer gm(const at::Tensor& t, const char* name) {
  return npu_ops_emu::GmBuffer{t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size(), name};
}

void check_cpu(const at::Tensor& t, const char* arg) {
  TORCH_CHECK(t.device().is_cpu(), kOp, ": ", arg, " must be a CPU tensor (the emulator runs on CPU), got ",
              t.device());
}

void check_shape(const at::Tensor& t, const char* arg, at::IntArrayRef want, const char* layout) {
  TORCH_CHECK(t.sizes() == want, kOp, ": ", arg, " must have shape ", layout, " = ", want, ", got ", t.sizes());
}

asc::MsdaBwdProblem check_inputs(const at::Tensor& grad_output, const at::Tensor& value,
                                 const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                                 const at::Tensor& loc, const at::Tensor& attn, asc::MsdaBwdDtype* dtype) {
  const std::pair<const at::Tensor*, const char*> all[] = {
      {&grad_output, "grad_output"},       {&value, "value"},
      {&spatial_shapes, "spatial_shapes"}, {&level_start_index, "level_start_index"},
      {&loc, "sampling_locations"},        {&attn, "attention_weights"}};
  for (const auto& [t, n] : all) check_cpu(*t, n);
  TORCH_CHECK(value.dim() == 4, kOp, ": value must be 4-D [bs, num_keys, num_heads, channels], got ", value.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2, kOp,
              ": spatial_shapes must be [num_levels, 2], got ", spatial_shapes.sizes());
  switch (value.scalar_type()) {
    case at::kFloat: *dtype = asc::kMsdaBwdFloat32; break;
    case at::kHalf: *dtype = asc::kMsdaBwdFloat16; break;
    case at::kBFloat16: *dtype = asc::kMsdaBwdBFloat16; break;
    default:
      TORCH_CHECK(false, kOp, ": value must be float32, float16 or bfloat16 for the AscendC kernel, got ",
                  value.scalar_type());
  }
  for (const auto& [t, n] : {all[0], all[4], all[5]}) {
    TORCH_CHECK(t->scalar_type() == value.scalar_type(), kOp, ": ", n, " must have value's dtype ", value.scalar_type(),
                ", got ", t->scalar_type());
  }
  for (const auto& [t, n] : {all[2], all[3]}) {
    TORCH_CHECK(t->scalar_type() == at::kInt || t->scalar_type() == at::kLong, kOp, ": ", n,
                " must be int32 or int64, got ", t->scalar_type());
  }
  const int64_t bs = value.size(0), nk = value.size(1), H = value.size(2), C = value.size(3);
  const int64_t L = spatial_shapes.size(0);
  TORCH_CHECK(L >= 1, kOp, ": spatial_shapes must describe at least one level");
  check_shape(level_start_index, "level_start_index", {L}, "[num_levels]");
  TORCH_CHECK(loc.dim() == 6, kOp, ": sampling_locations must be 6-D [bs, num_queries, num_heads, num_levels, ",
              "num_points, 2], got ", loc.sizes());
  const int64_t nq = loc.size(1), P = loc.size(4);
  check_shape(loc, "sampling_locations", {bs, nq, H, L, P, 2},
              "[bs, num_queries, num_heads, num_levels, num_points, 2]");
  check_shape(attn, "attention_weights", {bs, nq, H, L, P}, "[bs, num_queries, num_heads, num_levels, num_points]");
  check_shape(grad_output, "grad_output", {bs, nq, H * C}, "[bs, num_queries, num_heads * channels]");
  asc::MsdaBwdProblem p;
  p.batch = static_cast<uint64_t>(bs);
  p.num_keys = static_cast<uint64_t>(nk);
  p.num_queries = static_cast<uint64_t>(nq);
  p.heads = static_cast<uint32_t>(H);
  p.channels = static_cast<uint32_t>(C);
  p.points = static_cast<uint32_t>(P);
  const at::Tensor shapes = spatial_shapes.to(at::kLong).contiguous(), starts = level_start_index.to(at::kLong);
  int64_t expect = 0;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t h = shapes[l][0].item<int64_t>(), w = shapes[l][1].item<int64_t>(), s = starts[l].item<int64_t>();
    TORCH_CHECK(h >= 1 && w >= 1, kOp, ": spatial_shapes[", l, "] = (", h, ", ", w, ") must be positive");
    TORCH_CHECK(s == expect, kOp, ": level_start_index[", l, "] must be ", expect,
                " (the sum of the previous levels' h*w), got ", s);
    p.levels.push_back({static_cast<uint64_t>(h), static_cast<uint64_t>(w), static_cast<uint64_t>(s)});
    expect += h * w;
  }
  TORCH_CHECK(expect == nk, kOp, ": value has num_keys = ", nk, " but the levels hold sum(h*w) = ", expect);
  return p;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> msda_backward_sim(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations, const at::Tensor& attention_weights,
    int64_t block_num, int64_t seed, const std::string& design, bool deterministic) {
  TORCH_CHECK(block_num >= 1 && block_num <= 65535, kOp, ": block_num must be in [1, 65535], got ", block_num);
  TORCH_CHECK(design == "codesign" || design == "naive", kOp, ": design must be 'codesign' or 'naive', got '", design,
              "'");
  asc::MsdaBwdDtype dtype;
  const asc::MsdaBwdProblem p = check_inputs(grad_output, value, spatial_shapes, level_start_index, sampling_locations,
                                             attention_weights, &dtype);
  const at::Tensor go = grad_output.contiguous(), v = value.contiguous(), loc = sampling_locations.contiguous(),
                   attn = attention_weights.contiguous();
  at::Tensor grad_value = at::empty_like(v);
  at::Tensor grad_loc = at::empty_like(loc);
  at::Tensor grad_attn = at::empty_like(attn);
  if (v.numel() == 0 || loc.numel() == 0 || go.numel() == 0) {  // nothing to launch
    return {grad_value.zero_(), grad_loc.zero_(), grad_attn.zero_()};
  }
  const asc::MsdaBwdDesign d = design == "codesign" ? asc::kMsdaBwdCodesign : asc::kMsdaBwdNaive;
  asc::MsdaBwdTiling t;
  std::vector<asc::MsdaBwdLevel> levels;
  std::string reason;
  TORCH_CHECK(asc::compute_msda_backward_tiling(p, dtype, d, deterministic, static_cast<uint32_t>(block_num),
                                                npu_ops_emu::kUbUsableBytes, &t, &levels, &reason),
              reason);
  const std::vector<uint8_t> blob = asc::msda_backward_tiling_blob(t, levels);
  at::Tensor tiling = at::empty({static_cast<int64_t>(blob.size())}, at::TensorOptions().dtype(at::kByte));
  std::memcpy(tiling.data_ptr(), blob.data(), blob.size());
  // fp32 accumulates straight into grad_value; a 1-element dummy stands in for the workspace.
  at::Tensor workspace = at::empty({t.workspaceBytes > 0 ? static_cast<int64_t>(t.workspaceBytes / 4) : int64_t{1}},
                                   v.options().dtype(at::kFloat));
  npu_ops_emu::Run(d == asc::kMsdaBwdCodesign ? "npu_ops_msda_bwd" : "npu_ops_msda_bwd_naive", t.blockNum,
                   static_cast<uint64_t>(seed),
                   {gm(go, "grad_output"), gm(v, "value"), gm(loc, "sampling_locations"), gm(attn, "attention_weights"),
                    gm(grad_value, "grad_value"), gm(grad_loc, "grad_sampling_locations"),
                    gm(grad_attn, "grad_attention_weights"), gm(workspace, "workspace"), gm(tiling, "tiling")},
                   pick_kernel(dtype, d), ptr(go), ptr(v), ptr(loc), ptr(attn), ptr(grad_value), ptr(grad_loc),
                   ptr(grad_attn), ptr(workspace), ptr(tiling));
  return {grad_value, grad_loc, grad_attn};
}

// The tiling the kernel would get (for tests of the tiling itself): the header fields as ints.
std::vector<int64_t> msda_backward_tiling_sim(const std::vector<int64_t>& dims, const std::vector<int64_t>& level_hw,
                                              int64_t dtype, const std::string& design, bool deterministic,
                                              int64_t block_num, int64_t ub_bytes) {
  TORCH_CHECK(dims.size() == 6, kOp, ": dims must be [bs, num_keys, num_queries, heads, channels, points]");
  TORCH_CHECK(level_hw.size() % 2 == 0 && !level_hw.empty(), kOp, ": level_hw must be [h0, w0, h1, w1, ...]");
  asc::MsdaBwdProblem p;
  p.batch = dims[0];
  p.num_queries = dims[2];
  p.heads = static_cast<uint32_t>(dims[3]);
  p.channels = static_cast<uint32_t>(dims[4]);
  p.points = static_cast<uint32_t>(dims[5]);
  uint64_t start = 0;
  for (size_t i = 0; i < level_hw.size(); i += 2) {
    p.levels.push_back({static_cast<uint64_t>(level_hw[i]), static_cast<uint64_t>(level_hw[i + 1]), start});
    start += level_hw[i] * level_hw[i + 1];
  }
  p.num_keys = dims[1] > 0 ? dims[1] : start;
  asc::MsdaBwdTiling t;
  std::vector<asc::MsdaBwdLevel> levels;
  std::string reason;
  TORCH_CHECK(asc::compute_msda_backward_tiling(p, static_cast<asc::MsdaBwdDtype>(dtype),
                                                design == "codesign" ? asc::kMsdaBwdCodesign : asc::kMsdaBwdNaive,
                                                deterministic, static_cast<uint32_t>(block_num),
                                                static_cast<uint32_t>(ub_bytes), &t, &levels, &reason),
              reason);
  std::vector<int64_t> r = {static_cast<int64_t>(t.ubBytes),
                            t.tileRows,
                            t.group,
                            t.privRows,
                            t.cs,
                            t.lps,
                            t.np,
                            static_cast<int64_t>(t.sliceChunks),
                            t.blockNum,
                            static_cast<int64_t>(t.workspaceBytes),
                            t.winRows};
  for (const auto& l : levels) r.push_back(l.priv);
  return r;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(npu_ops_sim, m) {
  m.def(
      "msda_backward(Tensor grad_output, Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights, int block_num, int seed, str design, bool deterministic) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "msda_backward_tiling(int[] dims, int[] level_hw, int dtype, str design, bool deterministic, int block_num, "
      "int ub_bytes) -> int[]");
}

TORCH_LIBRARY_IMPL(npu_ops_sim, CPU, m) {
  m.impl("msda_backward", &msda_backward_sim);
}

TORCH_LIBRARY_IMPL(npu_ops_sim, CompositeExplicitAutograd, m) {
  m.impl("msda_backward_tiling", &msda_backward_tiling_sim);
}

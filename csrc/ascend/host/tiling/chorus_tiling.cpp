// Host tiling of the Chorus AscendC kernels. See chorus_tiling.h / chorus_tiling_data.h.
//
// The UB plans below mirror, buffer for buffer, the InitBuffer calls of
// csrc/ascend/kernels/masked_blend.h and amplified_softmax.h: change both together.
#include "chorus_tiling.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

namespace npu_ops {
namespace ascend {
namespace {

constexpr uint64_t kB = kChorusBlockBytes;

uint64_t ceil_div(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}
uint64_t align_up(uint64_t a, uint64_t b) {
  return ceil_div(a, b) * b;
}
uint64_t buf(uint64_t bytes) {
  return align_up(bytes, kB);
}  // InitBuffer rounds to 32 B

bool fail(std::string* reason, const std::string& msg) {
  if (reason != nullptr) *reason = msg;
  return false;
}

bool valid_dtype(ChorusDtype d) {
  return d == kChorusFloat32 || d == kChorusFloat16 || d == kChorusBFloat16;
}

uint32_t clamp_blocks(uint32_t block_num) {
  return std::max<uint32_t>(1, std::min(block_num, kChorusMaxBlocks));
}

// ---------------------------------------------------------------------------------------------
// masked_blend UB plan (bytes). rows: tileRows, cols: tileCols.
uint64_t blend_ub_bytes(uint32_t mode, ChorusDtype dtype, MaskedBlendMaskKind mk, bool backward, uint32_t bufs,
                        uint64_t rows, uint64_t cols) {
  const uint64_t sz = chorus_dtype_bytes(dtype);
  const uint64_t szm = mk == kBlendMaskU8 ? 1 : sz;
  const uint64_t stride = align_up(cols, kB / sz);  // UB row stride, elements
  const uint64_t tile = rows * stride;
  const uint64_t n_in = backward ? 3 : 2;
  const uint64_t n_out = backward ? 2 : 1;
  uint64_t total = 0;
  total += (n_in + n_out) * bufs * buf(tile * sz);             // data queues
  if (dtype != kChorusFloat32) total += n_in * buf(tile * 4);  // fp32 work tiles
  const uint64_t mask_elems = mode == kBlendColumnMask ? cols : rows;
  total += bufs * buf(mask_elems * szm);  // mask queue
  const uint64_t mask32 = align_up(mask_elems, 32);
  total += (mode == kBlendColumnMask && !backward ? 2 : 1) * buf(mask32 * 4);  // fp32 mask (and 1 - mask)
  if (mk == kBlendMaskU8) total += buf(mask32 * 2);                            // u8 -> half -> float
  if (backward && mk == kBlendMaskFloat) {
    if (mode == kBlendColumnMask) {
      total += bufs * buf(stride * 4);  // grad_mask partial-sum queue
    } else {
      total += buf(rows * 8 * 4);                             // ReduceSum results, one 32 B slot per row
      total += buf(align_up(rows, 8) * 4);                    // grad_mask values of the tile
      total += buf(align_up(2 * ceil_div(cols, 64), 8) * 4);  // ReduceSum scratch
    }
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// amplified_softmax UB plan (bytes).
// ReduceMax scratch (fp32 elements): the first round's (value, index) pairs, 32 B aligned, plus
// room for a second round (the documented requirement when indices are kept; we reserve it
// although the kernels do not ask for indices). ReduceSum needs less.
uint32_t softmax_tmp_elems(uint64_t cols) {
  const uint64_t reps = std::max<uint64_t>(1, ceil_div(cols, 64));
  const uint64_t first = align_up(2 * reps, 8);
  return static_cast<uint32_t>(reps == 1 ? first : first + align_up(ceil_div(2 * reps, 64) * 2, 8));
}

uint64_t softmax_ub_bytes(ChorusDtype dtype, bool renorm, bool backward, uint32_t bufs, uint64_t rows, uint64_t cols) {
  const uint64_t sz = chorus_dtype_bytes(dtype);
  const uint64_t stride = align_up(cols, kB / sz);
  const uint64_t tile = rows * stride;
  const uint64_t p64 = align_up(cols, 64);
  uint64_t total = 0;
  const uint64_t n_io = backward ? 3 : 2;  // fwd: scores in, out; bwd: grad, scores in, grad_scores out
  total += n_io * bufs * buf(tile * sz);
  uint64_t n_work = 1;  // fwd: x
  if (backward) n_work = (renorm ? 3 : 2) + (dtype != kChorusFloat32 ? 1 : 0);
  total += n_work * buf(tile * 4);
  total += buf(p64 * 4);              // alpha queue (one buffer)
  total += buf(p64 * 4);              // alpha or ln(alpha), fp32
  if (renorm) total += buf(p64 / 8);  // Compares bits
  if (backward) {
    total += buf(p64 * 4);  // grad_alpha accumulator
    total += buf(p64 * 4);  // grad_alpha flush queue (one buffer)
  }
  total += buf(rows * 8 * 4);                 // per-row reduction slots
  total += buf(softmax_tmp_elems(cols) * 4);  // ReduceMax/ReduceSum scratch
  return total;
}

}  // namespace

uint32_t chorus_dtype_bytes(ChorusDtype dtype) {
  return dtype == kChorusFloat32 ? 4u : 2u;
}

const char* chorus_dtype_name(ChorusDtype dtype) {
  switch (dtype) {
    case kChorusFloat32: return "float32";
    case kChorusFloat16: return "float16";
    case kChorusBFloat16: return "bfloat16";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
bool canonicalize_masked_blend(const std::vector<int64_t>& data_shape, const std::vector<int64_t>& mask_shape,
                               MaskedBlendCanon* out, std::string* reason) {
  if (mask_shape.size() > data_shape.size()) {
    std::ostringstream os;
    os << "masked_blend: mask has " << mask_shape.size() << " dims but the data has " << data_shape.size()
       << "; the mask must broadcast to the data shape";
    return fail(reason, os.str());
  }
  const size_t rank = data_shape.size();
  const size_t off = rank - mask_shape.size();
  uint64_t numel = 1;
  // Per data dim: 'F' mask varies along it, 'B' mask broadcast along it, skipped when size 1.
  std::vector<std::pair<char, uint64_t>> dims;
  for (size_t d = 0; d < rank; ++d) {
    const int64_t n = data_shape[d];
    const int64_t m = d >= off ? mask_shape[d - off] : 1;
    if (n < 0 || m < 0 || (m != n && m != 1)) {
      std::ostringstream os;
      os << "masked_blend: mask dim " << m << " does not broadcast to data dim " << n << " (data dim " << d << ")";
      return fail(reason, os.str());
    }
    numel *= static_cast<uint64_t>(n);
    if (n == 1) continue;
    dims.emplace_back(m == n ? 'F' : 'B', static_cast<uint64_t>(n));
  }
  MaskedBlendCanon c;
  // Fit F* B* F* : outer = first F run, mid = the B run, inner = last F run.
  size_t i = 0;
  while (i < dims.size() && dims[i].first == 'F') c.outer *= dims[i++].second;
  while (i < dims.size() && dims[i].first == 'B') c.mid *= dims[i++].second;
  while (i < dims.size() && dims[i].first == 'F') c.inner *= dims[i++].second;
  if (i != dims.size()) {
    c = MaskedBlendCanon();
    c.inner = numel;
    c.expand_mask = true;
  } else if (c.mid == 1) {  // full-size mask: one flat run
    c.inner *= c.outer;
    c.outer = 1;
  }
  if (numel == 0) c = MaskedBlendCanon{0, 1, 1, false};
  *out = c;
  return true;
}

bool compute_masked_blend_tiling(uint64_t outer, uint64_t mid, uint64_t inner, ChorusDtype dtype,
                                 MaskedBlendMaskKind mask_kind, bool backward, uint32_t block_num, uint32_t ub_bytes,
                                 MaskedBlendTiling* out, std::string* reason) {
  if (!valid_dtype(dtype)) return fail(reason, "masked_blend: unsupported dtype");
  if (mask_kind != kBlendMaskFloat && mask_kind != kBlendMaskU8) return fail(reason, "masked_blend: bad mask kind");
  if (outer == 0 || mid == 0 || inner == 0) return fail(reason, "masked_blend: empty problem (launch nothing)");
  const uint32_t blocks = clamp_blocks(block_num);
  const uint32_t bufs = 2;
  MaskedBlendTiling t;
  std::memset(&t, 0, sizeof(t));
  t.outer = outer;
  t.mid = mid;
  t.inner = inner;
  t.mode = (inner == 1 && mid > 1) ? kBlendRowMask : kBlendColumnMask;
  t.maskKind = mask_kind;
  t.dtype = dtype;
  t.backward = backward ? 1 : 0;
  t.blockNum = blocks;
  t.bufferNum = bufs;
  // Row length (elements) and row count in the mode's own terms.
  const uint64_t row_len = t.mode == kBlendColumnMask ? inner : mid;
  const uint64_t row_cnt = t.mode == kBlendColumnMask ? mid : outer;  // rows that can share a tile
  const uint64_t all_rows = t.mode == kBlendColumnMask ? outer * mid : outer;
  auto fits = [&](uint64_t rows, uint64_t cols) {
    return blend_ub_bytes(t.mode, dtype, mask_kind, backward, bufs, rows, cols) <= ub_bytes;
  };
  uint64_t rows = 0, cols = 0;
  if (fits(1, row_len)) {
    cols = row_len;
    // As many whole rows as fit, but spread them over the blocks.
    uint64_t hi = std::min<uint64_t>(row_cnt, kChorusMaxBlockCount);
    hi = std::min<uint64_t>(hi, std::max<uint64_t>(1, ceil_div(all_rows, blocks)));
    uint64_t lo = 1;
    while (lo < hi) {
      const uint64_t m = (lo + hi + 1) / 2;
      if (fits(m, cols))
        lo = m;
      else
        hi = m - 1;
    }
    rows = lo;
  } else {
    rows = 1;
    uint64_t lo = 0, hi = row_len / 64;  // chunks are multiples of 64 elements (256 B of fp32)
    while (lo < hi) {
      const uint64_t m = (lo + hi + 1) / 2;
      if (fits(1, m * 64))
        lo = m;
      else
        hi = m - 1;
    }
    if (lo == 0) {
      std::ostringstream os;
      os << "masked_blend: UB budget of " << ub_bytes << " bytes is too small for a 64-element tile";
      return fail(reason, os.str());
    }
    cols = lo * 64;
    // Enough chunks for every block when there are few rows.
    const uint64_t want = align_up(ceil_div(row_len * all_rows, blocks), 64);
    if (want >= 1024 && want < cols) cols = want;
  }
  t.tileRows = static_cast<uint32_t>(rows);
  t.tileCols = static_cast<uint32_t>(cols);
  t.numColChunks = static_cast<uint32_t>(ceil_div(row_len, cols));
  t.numRowBlocks = ceil_div(row_cnt, rows);
  t.numTiles = t.numRowBlocks * t.numColChunks * (t.mode == kBlendColumnMask ? outer : 1);
  t.ubBytes = static_cast<uint32_t>(blend_ub_bytes(t.mode, dtype, mask_kind, backward, bufs, rows, cols));
  *out = t;
  return true;
}

// ---------------------------------------------------------------------------------------------
bool canonicalize_amplified_softmax(const std::vector<int64_t>& scores_shape, const std::vector<int64_t>& alpha_shape,
                                    AmplifiedSoftmaxCanon* out, std::string* reason) {
  const size_t rank = scores_shape.size();
  if (rank == 0) return fail(reason, "amplified_softmax: scores must have at least 1 dim (the key axis)");
  if (alpha_shape.size() > rank) {
    std::ostringstream os;
    os << "amplified_softmax: alpha has " << alpha_shape.size() << " dims but scores has " << rank
       << "; alpha must broadcast to scores";
    return fail(reason, os.str());
  }
  const size_t off = rank - alpha_shape.size();
  auto adim = [&](size_t d) { return d >= off ? alpha_shape[d - off] : int64_t{1}; };
  AmplifiedSoftmaxCanon c;
  c.cols = static_cast<uint64_t>(scores_shape[rank - 1]);
  c.rows = 1;
  int64_t last_var = -1;  // last leading dim alpha varies along
  for (size_t d = 0; d < rank; ++d) {
    const int64_t n = scores_shape[d], a = adim(d);
    if (n < 0 || (a != n && a != 1)) {
      std::ostringstream os;
      os << "amplified_softmax: alpha dim " << a << " does not broadcast to scores dim " << n << " (dim " << d << ")";
      return fail(reason, os.str());
    }
    if (d + 1 < rank) {
      c.rows *= static_cast<uint64_t>(n);
      if (a == n && n != 1) last_var = static_cast<int64_t>(d);
    }
  }
  c.alpha_expand_shape.assign(rank, 1);
  c.groups = 1;
  for (int64_t d = 0; d <= last_var; ++d) {
    c.alpha_expand_shape[d] = scores_shape[d];
    c.groups *= static_cast<uint64_t>(scores_shape[d]);
  }
  c.alpha_expand_shape[rank - 1] = scores_shape[rank - 1];
  c.expand_alpha = false;
  for (size_t d = 0; d < rank; ++d) {
    if (adim(d) != c.alpha_expand_shape[d]) c.expand_alpha = true;
  }
  if (c.rows == 0 || c.cols == 0) c.groups = std::max<uint64_t>(c.groups, 1);
  *out = c;
  return true;
}

uint32_t amplified_softmax_max_cols(ChorusDtype dtype, bool renormalize, bool backward, uint32_t ub_bytes) {
  if (!valid_dtype(dtype)) return 0;
  uint64_t lo = 0, hi = ub_bytes;  // a row needs > 1 byte per element
  while (lo < hi) {
    const uint64_t m = (lo + hi + 1) / 2;
    if (softmax_ub_bytes(dtype, renormalize, backward, 1, 1, m) <= ub_bytes)
      lo = m;
    else
      hi = m - 1;
  }
  return static_cast<uint32_t>(lo);
}

bool compute_amplified_softmax_tiling(uint64_t rows, uint64_t groups, uint32_t cols, float scale, bool renormalize,
                                      ChorusDtype dtype, bool backward, uint32_t block_num, uint32_t ub_bytes,
                                      AmplifiedSoftmaxTiling* out, std::string* reason) {
  if (!valid_dtype(dtype)) return fail(reason, "amplified_softmax: unsupported dtype");
  if (rows == 0 || cols == 0) return fail(reason, "amplified_softmax: empty problem (launch nothing)");
  if (groups == 0 || rows % groups != 0) {
    std::ostringstream os;
    os << "amplified_softmax: " << rows << " rows do not split into " << groups << " alpha groups";
    return fail(reason, os.str());
  }
  if (!std::isfinite(scale)) return fail(reason, "amplified_softmax: scale must be finite");
  const uint32_t blocks = clamp_blocks(block_num);
  uint32_t bufs = 2;
  if (softmax_ub_bytes(dtype, renormalize, backward, bufs, 1, cols) > ub_bytes) bufs = 1;
  if (softmax_ub_bytes(dtype, renormalize, backward, bufs, 1, cols) > ub_bytes) {
    std::ostringstream os;
    os << "amplified_softmax" << (backward ? " backward" : "") << ": a row of L=" << cols << " "
       << chorus_dtype_name(dtype) << " keys does not fit the " << ub_bytes << "-byte UB of an AI core; the AscendC "
       << "kernel supports L <= " << amplified_softmax_max_cols(dtype, renormalize, backward, ub_bytes)
       << " for this dtype and mode (renormalize=" << (renormalize ? "True" : "False") << ")";
    return fail(reason, os.str());
  }
  AmplifiedSoftmaxTiling t;
  std::memset(&t, 0, sizeof(t));
  t.rows = rows;
  t.groups = groups;
  t.rowsPerGroup = rows / groups;
  t.cols = cols;
  t.colsPad = static_cast<uint32_t>(align_up(cols, kB / chorus_dtype_bytes(dtype)));
  t.colsPad64 = static_cast<uint32_t>(align_up(cols, 64));
  t.reduceTmpElems = softmax_tmp_elems(cols);
  std::memcpy(&t.scaleBits, &scale, sizeof(float));
  t.renormalize = renormalize ? 1 : 0;
  t.dtype = dtype;
  t.backward = backward ? 1 : 0;
  t.blockNum = blocks;
  t.bufferNum = bufs;
  uint64_t hi =
      std::min<uint64_t>({t.rowsPerGroup, kChorusMaxBlockCount, std::max<uint64_t>(1, ceil_div(rows, blocks))});
  uint64_t lo = 1;
  while (lo < hi) {
    const uint64_t m = (lo + hi + 1) / 2;
    if (softmax_ub_bytes(dtype, renormalize, backward, bufs, m, cols) <= ub_bytes)
      lo = m;
    else
      hi = m - 1;
  }
  t.tileRows = static_cast<uint32_t>(lo);
  t.ubBytes = static_cast<uint32_t>(softmax_ub_bytes(dtype, renormalize, backward, bufs, lo, cols));
  *out = t;
  return true;
}

}  // namespace ascend
}  // namespace npu_ops

// Host tiling of the MSDA backward kernels. See msda_backward_tiling.h.
//
// msda_backward_ub_bytes() mirrors, buffer for buffer, MsdaBackwardKernel::Init in
// csrc/ascend/kernels/msda_backward.h: change both together.
#include "msda_backward_tiling.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <sstream>

namespace npu_ops {
namespace ascend {
namespace {

constexpr uint64_t kB = 32;
constexpr uint32_t kMaxBlocks = 65535;
constexpr uint32_t kMaxTileRows = 4095;       // DataCopyPad blockCount
constexpr uint32_t kMaxTilePoints = 256;      // points per tile (length of the per-point planes)
constexpr uint32_t kMinTilePoints = 64;       // tile size kept when UB is shared with privatisation
constexpr uint64_t kMaxLevelSide = 1u << 24;  // level sides stay exact in fp32
constexpr uint32_t kMinWinRows = 256;         // window rows kept for the tile windows when UB is short
constexpr uint32_t kMaxWinRows = 0xffffff;
constexpr uint32_t kMinWinGroup =
    4;  // smallest corner group taken to make room for windows    // window row indices stay exact as uint32 products

uint64_t ceil_div(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}
uint64_t align_up(uint64_t a, uint64_t b) {
  return ceil_div(a, b) * b;
}
uint64_t buf(uint64_t bytes) {  // InitBuffer rounds to 32 B
  return align_up(bytes, kB);
}
bool fail(std::string* reason, const std::string& msg) {
  if (reason != nullptr) *reason = msg;
  return false;
}
uint32_t dtype_bytes(MsdaBwdDtype d) {
  return d == kMsdaBwdFloat32 ? 4u : 2u;
}
uint32_t lps_of(const MsdaBwdProblem& p) {
  return static_cast<uint32_t>(align_up(p.levels.size() * p.points, kMsdaBwdUnitPoints));
}
uint32_t cs_of(const MsdaBwdProblem& p, MsdaBwdDtype d) {
  return static_cast<uint32_t>(align_up(p.channels, kB / dtype_bytes(d)));
}
uint32_t np_of(uint32_t tile_rows, uint32_t lps) {
  return static_cast<uint32_t>(align_up(uint64_t(tile_rows) * lps, 64));
}
// Channel rows of the privatisation buffers a level needs: [pixels][cs], one (b, h) at a time.
uint64_t priv_rows_of(const MsdaBwdLevelShape& l) {
  return l.height * l.width;
}

}  // namespace

uint64_t msda_backward_ub_bytes(const MsdaBwdProblem& p, MsdaBwdDtype dtype, MsdaBwdDesign design, uint32_t tile_rows,
                                uint32_t group, uint32_t priv_rows, uint32_t win_rows) {
  const uint64_t sz = dtype_bytes(dtype), TR = tile_rows, lps = lps_of(p), cs = cs_of(p, dtype);
  const uint64_t slack = kMsdaBwdSlackElems, G = group, np = np_of(tile_rows, lps_of(p));
  const bool f32 = dtype == kMsdaBwdFloat32;
  uint64_t t = 0;
  t += buf(p.levels.size() * sizeof(MsdaBwdLevel));  // level table
  t += buf(TR * lps * 2 * sz) + buf(TR * lps * sz);  // locations, attention weights in
  t += buf((TR * cs + slack) * sz);                  // grad_output rows in
  if (!f32) t += buf((TR * cs + slack) * 4);         // grad_output fp32
  t += buf(TR * lps * 2 * sz) + buf(TR * lps * sz);  // grad_loc, grad_attn out
  t += buf(kMsdaBwdChunkElems * 4);                  // zeroing / cast chunk
  if (!f32) t += buf(kMsdaBwdChunkElems * sz);       // cast chunk out
  if (design == kMsdaBwdCodesign) {
    t += buf(kMsdaBwdPlanes * np * 4) + buf(kMsdaBwdIntPlanes * np * 4);
    if (!f32) t += buf(2 * np * sz);                                // de-interleaved locations, data dtype
    t += 2 * buf(align_up(np / 8, kB));                             // masks (one allocation, two halves)
    t += buf(2 * np * 4) + buf(TR * lps * 2 * 4);                   // de-interleave, interleave tables
    t += buf(4 * G * 8 * 4) + buf(4 * kMsdaBwdUnitPoints * 8 * 4);  // broadcast, transpose tables
    if (!f32) t += buf(TR * lps * 2 * 4);                           // grad_loc fp32
    t += 2 * buf((4 * G * cs + slack) * sz);                        // corner rows, double-buffered
    if (!f32) t += buf((4 * G * cs + slack) * 4);                   // corner rows fp32
    t += 2 * buf(4 * kMsdaBwdUnitPoints * 8 * 4);                   // partial sums, transposed sums
    t += buf(4 * G * 8 * 4);                                        // broadcast coefficients
    t += buf(64 * 4);                                               // g repeated to 64 lanes
    t += 2 * buf((4 * G * cs + slack) * 4);                         // scatter rows, double-buffered
    // grad (with slack for the two-row Adds), value: privatised slices, then tile windows
    if (priv_rows > 0) t += buf((uint64_t(priv_rows) * cs + slack) * 4) + buf(uint64_t(priv_rows) * cs * sz);
    if (win_rows > 0) t += buf((uint64_t(win_rows) * cs + slack) * 4) + buf(uint64_t(win_rows) * cs * sz);
  } else {
    if (!f32) t += buf(TR * lps * 2 * 4) + buf(TR * lps * 4);  // fp32 locations, weights
    t += buf(TR * lps * 2 * 4) + buf(TR * lps * 4);            // fp32 results
    t += buf(4 * cs * sz);                                     // corner rows
    if (!f32) t += buf(4 * cs * 4);
    t += buf(cs * 4) + buf(4 * kB);               // product, reduction slots
    t += buf(align_up(ceil_div(cs, 64), 8) * 4);  // ReduceSum scratch
    t += buf(4 * cs * 4);                         // scatter rows
  }
  return t;
}

bool compute_msda_backward_tiling(const MsdaBwdProblem& p, MsdaBwdDtype dtype, MsdaBwdDesign design, bool deterministic,
                                  uint32_t block_num, uint32_t ub_bytes, MsdaBwdTiling* out,
                                  std::vector<MsdaBwdLevel>* levels, std::string* reason) {
  const char* op = "msda_backward";
  if (dtype != kMsdaBwdFloat32 && dtype != kMsdaBwdFloat16 && dtype != kMsdaBwdBFloat16)
    return fail(reason, std::string(op) + ": unsupported dtype");
  if (design != kMsdaBwdNaive && design != kMsdaBwdCodesign) return fail(reason, std::string(op) + ": unknown design");
  if (p.batch == 0 || p.num_queries == 0 || p.heads == 0 || p.channels == 0 || p.points == 0 || p.levels.empty() ||
      p.num_keys == 0)
    return fail(reason, std::string(op) + ": empty problem (launch nothing)");
  for (size_t l = 0; l < p.levels.size(); ++l) {
    const auto& lv = p.levels[l];
    if (lv.height == 0 || lv.width == 0 || lv.height >= kMaxLevelSide || lv.width >= kMaxLevelSide ||
        lv.start + lv.height * lv.width > p.num_keys) {
      std::ostringstream os;
      os << op << ": level " << l << " (h=" << lv.height << ", w=" << lv.width << ", start=" << lv.start
         << ") must have sides in [1, 2^24) and lie inside the " << p.num_keys << " keys";
      return fail(reason, os.str());
    }
  }
  const uint32_t sz = dtype_bytes(dtype);
  const uint32_t cs = cs_of(p, dtype);
  if (design == kMsdaBwdCodesign && cs > kMsdaBwdMaxRowStride) {
    std::ostringstream os;
    os << op << ": channels=" << p.channels << " exceeds the co-designed kernel's limit of " << kMsdaBwdMaxRowStride
       << " (repeat strides are 8-bit); use design='naive'";
    return fail(reason, os.str());
  }
  const uint64_t lp = uint64_t(p.levels.size()) * p.points;
  if (lp * 2 * sz > 2097151 || uint64_t(p.heads) * p.channels * 4 > 0xffffffffu / 2) {
    return fail(reason, std::string(op) + ": num_levels * num_points or num_heads * channels is too large");
  }
  const uint32_t lps = lps_of(p);
  const uint32_t blocks = std::max<uint32_t>(1, std::min(block_num, kMaxBlocks));
  const uint64_t rows = p.batch * p.num_queries * p.heads;
  auto fits = [&](uint32_t tr, uint32_t g, uint32_t priv, uint32_t win = 0) {
    return msda_backward_ub_bytes(p, dtype, design, tr, g, priv, win) <= ub_bytes;
  };
  // Corner group: the largest that fits with a one-row tile.
  uint32_t group = 0;
  for (uint32_t g : {16u, 8u, 4u, 2u}) {
    if (fits(1, g, 0)) {
      group = g;
      break;
    }
  }
  if (group == 0) {
    std::ostringstream os;
    os << op << ": channels=" << p.channels << " with num_levels*num_points=" << lp << " does not fit the " << ub_bytes
       << "-byte UB of an AI core";
    return fail(reason, os.str());
  }
  // Query chunks per (b, h) slice: about 8 units per block (1 when deterministic).
  const uint64_t slices = p.batch * p.heads;
  const uint64_t chunks = deterministic ? 1 : std::min<uint64_t>(p.num_queries, ceil_div(8ull * blocks, slices));
  const uint64_t chunk_q = ceil_div(p.num_queries, chunks);
  // Rows per tile: at most a chunk and kMaxTilePoints points.
  uint64_t cap = chunk_q;
  cap = std::min<uint64_t>({cap, kMaxTileRows, std::max<uint64_t>(1, kMaxTilePoints / lps)});
  auto largest_tile = [&](uint32_t g, uint32_t priv, uint32_t win) {  // 0 when not even one row fits
    uint32_t best = 0;
    for (uint32_t lo = 1, hi = static_cast<uint32_t>(cap); lo <= hi;) {
      const uint32_t m = lo + (hi - lo) / 2;
      if (fits(m, g, priv, win)) {
        best = m;
        lo = m + 1;
      } else {
        hi = m - 1;
      }
    }
    return best;
  };
  // UB privatisation (co-designed) comes before tile size: it removes DMAs, a bigger tile only
  // amortises per-tile work. Smallest levels first while their slices fit next to a tile of at
  // least kMinTilePoints points, and only levels a block is expected to hit with at least as many
  // corner rows as the slice has rows (else the one flush of the whole slice moves more than
  // the scattered rows would).
  const uint32_t min_tile = static_cast<uint32_t>(std::min<uint64_t>(cap, ceil_div(kMinTilePoints, lps)));
  // Deterministic: a block takes whole slices, and the plan (hence the summation order) must not
  // depend on the block count.
  const uint64_t rows_per_block =
      deterministic ? p.num_queries : std::min<uint64_t>(p.num_queries, ceil_div(rows, blocks));
  const uint64_t corner_rows = 4 * uint64_t(p.points) * rows_per_block;
  std::vector<MsdaBwdLevel> lv(p.levels.size());
  for (size_t l = 0; l < p.levels.size(); ++l) {
    lv[l] = MsdaBwdLevel{p.levels[l].start, static_cast<uint32_t>(p.levels[l].height),
                         static_cast<uint32_t>(p.levels[l].width), 0, 0};
  }
  uint32_t priv_rows = 0;
  // Self-attention over the maps (an encoder: as many queries as keys, the queries being the
  // pixels): a tile's points cluster at every level, so the per-tile windows cover the small
  // levels too, and the UB a privatised slice would take buys bigger tiles (less vector work
  // per point) and window room instead.
  const bool encoder = p.num_queries >= p.num_keys;
  if (design == kMsdaBwdCodesign && !encoder) {
    std::vector<size_t> order(p.levels.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return priv_rows_of(p.levels[a]) < priv_rows_of(p.levels[b]); });
    for (size_t l : order) {
      const uint64_t need = priv_rows_of(p.levels[l]);
      if (need > corner_rows) continue;
      if (need + priv_rows > 0xffffffu || !fits(min_tile, group, static_cast<uint32_t>(priv_rows + need))) break;
      lv[l].priv = 1;
      lv[l].privRow = priv_rows;
      priv_rows += static_cast<uint32_t>(need);
    }
  }
  // Per-tile windows of the other levels (co-designed): the UB left next to the tile, after
  // keeping at least kMinWinRows for them when a tile of min_tile rows still fits beside it,
  // with a smaller corner group if need be (the group sets vector work, not DMAs).
  bool any_shared = false;
  for (const auto& l : lv) any_shared = any_shared || l.priv == 0;
  uint32_t tile = 0, win_rows = 0;
  if (design == kMsdaBwdCodesign && any_shared) {
    for (uint32_t g = group; g >= kMinWinGroup && tile < min_tile; g /= 2) {
      tile = largest_tile(g, priv_rows, kMinWinRows);
      if (tile >= min_tile) group = g;
    }
  }
  if (tile < min_tile) tile = largest_tile(group, priv_rows, 0);
  tile = std::max<uint32_t>(1, tile);
  if (design == kMsdaBwdCodesign && any_shared) {
    const uint64_t used = msda_backward_ub_bytes(p, dtype, design, tile, group, priv_rows, 0);
    const uint64_t per_row = uint64_t(cs) * (4 + sz);
    uint64_t w = used + 2 * kB < ub_bytes ? (ub_bytes - used - 2 * kB) / per_row : 0;
    w = std::min<uint64_t>(w, kMaxWinRows);
    while (w > 0 && !fits(tile, group, priv_rows, static_cast<uint32_t>(w))) --w;
    win_rows = w >= 4 ? static_cast<uint32_t>(w) : 0;  // a 2 x 2 window at least
  }
  MsdaBwdTiling t;
  std::memset(&t, 0, sizeof(t));
  t.batch = p.batch;
  t.numKeys = p.num_keys;
  t.numQueries = p.num_queries;
  t.rows = rows;
  t.accElems = p.batch * p.num_keys * p.heads * p.channels;
  t.workspaceBytes = dtype == kMsdaBwdFloat32 ? 0 : t.accElems * 4;
  t.sliceChunks = ceil_div(p.num_queries, chunk_q);
  t.chunkQueries = chunk_q;
  t.heads = p.heads;
  t.channels = p.channels;
  t.levels = static_cast<uint32_t>(p.levels.size());
  t.points = p.points;
  t.lp = static_cast<uint32_t>(lp);
  t.lps = lps;
  t.cs = cs;
  t.tileRows = tile;
  t.np = np_of(tile, lps);
  t.group = group;
  t.privRows = priv_rows;
  t.design = design;
  t.deterministic = deterministic ? 1 : 0;
  t.dtype = dtype;
  t.blockNum = blocks;
  t.winRows = win_rows;
  t.ubBytes = static_cast<uint32_t>(msda_backward_ub_bytes(p, dtype, design, tile, group, priv_rows, win_rows));
  if (design == kMsdaBwdCodesign) {
    t.tablesOffset = static_cast<uint32_t>(align_up(sizeof(MsdaBwdTiling) + lv.size() * sizeof(MsdaBwdLevel), kB));
    t.tablesWords = 2 * lps + 2 * t.np + 2 * tile * lps + 4 * group * 8 + 4 * kMsdaBwdUnitPoints * 8;
  }
  *out = t;
  *levels = lv;
  return true;
}

std::vector<uint8_t> msda_backward_tiling_blob(const MsdaBwdTiling& t, const std::vector<MsdaBwdLevel>& levels) {
  const size_t head = sizeof(MsdaBwdTiling) + levels.size() * sizeof(MsdaBwdLevel);
  std::vector<uint8_t> blob(t.tablesWords > 0 ? t.tablesOffset + t.tablesWords * 4ull : head, 0);
  std::memcpy(blob.data(), &t, sizeof(MsdaBwdTiling));
  if (!levels.empty())
    std::memcpy(blob.data() + sizeof(MsdaBwdTiling), levels.data(), levels.size() * sizeof(MsdaBwdLevel));
  if (t.tablesWords == 0) return blob;
  // The co-designed kernel's index tables (see msda_backward_tiling_data.h).
  std::vector<uint32_t> w;
  const uint32_t lps = t.lps, np = t.np, used = t.tileRows * lps, sz = t.dtype == kMsdaBwdFloat32 ? 4 : 2;
  auto push_float = [&](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    w.push_back(u);
  };
  for (uint32_t j = 0; j < lps; ++j) push_float(j < t.lp ? static_cast<float>(levels[j / t.points].width) : -1.0f);
  for (uint32_t j = 0; j < lps; ++j) push_float(j < t.lp ? static_cast<float>(levels[j / t.points].height) : -1.0f);
  for (uint32_t c = 0; c < 2; ++c) {
    for (uint32_t i = 0; i < np; ++i) w.push_back(i < used ? (i * 2 + c) * sz : 0u);
  }
  for (uint32_t i = 0; i < used; ++i) {
    w.push_back(i * 4);
    w.push_back((np + i) * 4);
  }
  for (uint32_t j = 0; j < t.group; ++j) {
    for (uint32_t k = 0; k < 4; ++k) {
      for (uint32_t lane = 0; lane < 8; ++lane) w.push_back((k * np + j) * 4);
    }
  }
  for (uint32_t lane = 0; lane < 8; ++lane) {
    for (uint32_t k = 0; k < 4; ++k) {
      for (uint32_t j = 0; j < kMsdaBwdUnitPoints; ++j) w.push_back(((j * 4 + k) * 8 + lane) * 4);
    }
  }
  std::memcpy(blob.data() + t.tablesOffset, w.data(), w.size() * 4);  // w.size() == tablesWords
  return blob;
}

}  // namespace ascend
}  // namespace npu_ops

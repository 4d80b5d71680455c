// Host tiling of the MSDA forward AscendC kernels. See msda_forward_tiling.h and
// msda_forward_tiling_data.h.
//
// msda_forward_ub_bytes mirrors, buffer for buffer, the InitBuffer calls of
// csrc/ascend/kernels/msda_forward.h (MsdaForwardNaive::Init, MsdaForwardCodesign::Init): change
// both together. The emulator tests compare it with the UB the kernel really allocates.
#include "msda_forward_tiling.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <sstream>

namespace npu_ops {
namespace ascend {
namespace {

constexpr uint64_t kB = kChorusBlockBytes;
constexpr uint32_t kMaxTileQ = 256;        // rows per codesign tile: larger tiles gain little
constexpr uint64_t kResidentWorth = 4;     // see the resident-level choice below
constexpr uint64_t kRowSlack = 256;        // the kernel's RowBlockOp slack past a buffer's last row
constexpr uint64_t kMinWindowPixels = 16;  // smaller windows rarely hold a tile's corners
constexpr uint32_t kWindowTarget = 256;    // a window that holds a tile of local queries' corners

uint64_t ceil_div(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}
uint64_t align_up(uint64_t a, uint64_t b) {
  return ceil_div(a, b) * b;
}

bool fail(std::string* reason, const std::string& msg) {
  if (reason != nullptr) *reason = msg;
  return false;
}

// The kernel's largest count-form Gathers move tileN plane elements (fp32) and chunkElems corner
// elements: the count form keeps count / 64 in an 8-bit repeat (asc-devkit
// impl/basic_api/kernel_operator_vec_gather_intf_impl.h), so at most 255 * 64 elements.
constexpr uint64_t kMaxGatherElems = 255 * 64;
bool gather_ok(const MsdaForwardTiling& t) {
  return t.tileN <= kMaxGatherElems && t.chunkElems <= kMaxGatherElems;
}

// Fields derived from (tileQ, pointGroup) of a codesign tiling.
void set_tile(MsdaForwardTiling* t, uint32_t tileQ, uint32_t pg) {
  const uint64_t lp = uint64_t(t->levels) * t->points;
  t->tileQ = tileQ;
  t->pointGroup = pg;
  t->tileN = static_cast<uint32_t>(align_up(uint64_t(tileQ) * lp, 64));
  t->chunkElems = static_cast<uint32_t>(uint64_t(pg) * 4 * tileQ * t->cPad);
}

// Resident levels: smallest first while the UB holds them (one head's [h*w, C] slice each, plus
// the shared zero row), and only where loading the slice (once per block, batch and head) moves
// at most kResidentWorth times the corner rows the block's points of that head would fetch by DMA
// (4 per point): a level much larger than the block's share of points is cheaper to gather by DMA.
void choose_resident(MsdaForwardTiling* t, const MsdaForwardShape& s, uint64_t rows_per_block, uint32_t ub_bytes) {
  const uint64_t sz = t->dtype == kChorusFloat32 ? 4 : 2;
  const uint64_t rows_per_batch = std::min<uint64_t>(rows_per_block, s.num_queries);
  const uint64_t worth_pixels = kResidentWorth * 4 * uint64_t(t->points) * rows_per_batch;
  std::vector<uint32_t> order(t->levels);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return uint64_t(t->levelH[a]) * t->levelW[a] < uint64_t(t->levelH[b]) * t->levelW[b];
  });
  const uint64_t row_bytes = uint64_t(t->cPad) * sz;
  for (uint32_t l : order) {
    if (uint64_t(t->levelH[l]) * t->levelW[l] > worth_pixels) break;
    MsdaForwardTiling trial = *t;
    const uint64_t base = trial.residentBytes == 0 ? row_bytes : trial.residentBytes;  // zero row first
    const uint64_t bytes = base + uint64_t(t->levelH[l]) * t->levelW[l] * row_bytes;
    if (bytes > UINT32_MAX) break;
    trial.residentBytes = static_cast<uint32_t>(bytes);
    trial.numResident = t->numResident + 1;
    trial.levelUbOffset[l] = static_cast<uint32_t>(base);
    trial.hasDmaLevels = trial.numResident < t->levels ? 1 : 0;
    if (msda_forward_ub_bytes(trial) > ub_bytes) break;
    *t = trial;
  }
  t->hasDmaLevels = t->numResident < t->levels ? 1 : 0;
}

// Window for the DMA levels: the rest of the UB (at most 4095 pixels: one DMA block count per
// image row, and no more than the largest DMA level).
void choose_window(MsdaForwardTiling* t, uint32_t ub_bytes) {
  if (!t->hasDmaLevels) return;
  const uint64_t row_bytes = uint64_t(t->cPad) * (t->dtype == kChorusFloat32 ? 4 : 2);
  uint64_t largest = 0;
  for (uint32_t l = 0; l < t->levels; ++l)
    if (t->levelUbOffset[l] == kMsdaNotResident)
      largest = std::max<uint64_t>(largest, uint64_t(t->levelH[l]) * t->levelW[l]);
  MsdaForwardTiling trial = *t;
  if (trial.residentBytes == 0) trial.residentBytes = static_cast<uint32_t>(row_bytes);  // the zero row
  trial.windowUbOffset = trial.residentBytes;
  trial.windowPixels = 1;
  const uint64_t need = msda_forward_ub_bytes(trial);
  if (need > ub_bytes) return;
  const uint64_t pixels =
      std::min<uint64_t>({1 + (ub_bytes - need) / row_bytes, uint64_t(kChorusMaxBlockCount), largest});
  if (pixels < kMinWindowPixels) return;
  trial.windowPixels = static_cast<uint32_t>(pixels);
  *t = trial;
}

}  // namespace

const char* msda_design_name(MsdaDesign design) {
  return design == kMsdaNaive ? "naive" : "codesign";
}

uint64_t msda_forward_ub_bytes(const MsdaForwardTiling& t) {
  const uint64_t sz = t.dtype == kChorusFloat32 ? 4 : 2;
  const bool f32 = t.dtype == kChorusFloat32;
  const uint64_t bufs = t.bufferNum;
  const uint64_t cp = t.cPad;
  if (t.design == kMsdaNaive) {
    const uint64_t m = uint64_t(t.heads) * t.levels * t.points;  // points of one row
    uint64_t total = 0;
    total += bufs * align_up(2 * m * sz, kB);     // locQue: the row's (x, y) pairs
    total += bufs * align_up(m * sz, kB);         // attnQue
    total += align_up(2 * m, 8) * 4;              // locF (fp32)
    total += align_up(m, 8) * 4;                  // attnF (fp32)
    total += bufs * cp * sz;                      // cornerQue: one corner row
    if (!f32) total += cp * 4;                    // cornerF
    total += uint64_t(t.heads) * cp * 4;          // acc: the row, fp32
    total += bufs * uint64_t(t.heads) * cp * sz;  // outQue
    return total;
  }
  const uint64_t q = t.tileQ, tn = t.tileN, ce = t.chunkElems;
  const bool win = t.windowPixels > 0, res = t.numResident > 0 || win, dma = t.hasDmaLevels != 0;
  uint64_t total = 0;
  total += bufs * q * t.locRowBytes;                  // locQue
  total += bufs * q * t.attnRowBytes;                 // attnQue
  total += bufs * (ce * sz + (f32 ? kRowSlack : 0));  // valQue: corner chunks (+ RowBlockOp slack)
  total += bufs * q * cp * sz;                        // outQue
  if (!f32) total += tn * sz;                         // gathT: de-interleaved inputs before the cast
  // fp32 planes of tileN: xs ys at, tabW tabH, tabDeint tabAttn, ones, 10 work planes, 4 weights,
  // + (gather region) tabBase and 4 offsets, + (window) 4 offsets and the level table,
  // + (DMA levels) pix and code.
  const uint64_t planes = 3 + 2 + 2 + 1 + 10 + 4 + (res ? 5 : 0) + (win ? 5 : 0) + (dma ? 2 : 0);
  total += planes * tn * 4;
  total += 6 * align_up(tn / 8, kB);                              // compare masks: scratch + 4 corners + validity
  total += ce / cp * 32 * 2;                                      // bcastTab wb: a 32-byte block per row
  total += res ? align_up(cp, 64) * 4 + ce * 4 + kRowSlack : 0;   // chanRamp goffs
  total += f32 ? 0 : ce * 4 + kRowSlack;                          // vf
  total += q * cp * 4;                                            // acc
  total += t.residentBytes + uint64_t(t.windowPixels) * cp * sz;  // gather region: zero row, levels, window
  return total;
}

bool compute_msda_forward_tiling(const MsdaForwardShape& s, MsdaDesign design, ChorusDtype dtype, uint32_t block_num,
                                 uint32_t ub_bytes, MsdaForwardTiling* out, std::string* reason) {
  const char* op = "msda_forward (AscendC)";
  if (dtype != kChorusFloat32 && dtype != kChorusFloat16 && dtype != kChorusBFloat16)
    return fail(reason, std::string(op) + ": unsupported dtype");
  if (design != kMsdaCodesign && design != kMsdaNaive) return fail(reason, std::string(op) + ": unknown design");
  const uint64_t rows = s.batch * s.num_queries;
  if (rows == 0 || s.heads == 0 || s.channels == 0)
    return fail(reason, std::string(op) + ": empty problem (launch nothing)");
  std::ostringstream os;
  if (s.levels.empty() || s.levels.size() > kMsdaMaxLevels) {
    os << op << ": num_levels must be in [1, " << kMsdaMaxLevels << "], got " << s.levels.size();
    return fail(reason, os.str());
  }
  if (s.points == 0) return fail(reason, std::string(op) + ": num_points must be >= 1, got 0");
  const uint64_t sz = dtype == kChorusFloat32 ? 4 : 2;
  if (s.heads * s.channels * sz >= (1ull << 31)) {
    os << op << ": one key's heads*channels = " << s.heads * s.channels << " elements exceed the 2 GiB DMA stride";
    return fail(reason, os.str());
  }
  if (s.heads * s.levels.size() * s.points > (1ull << 24)) {
    os << op << ": heads*levels*points = " << s.heads * s.levels.size() * s.points << " exceeds 2^24";
    return fail(reason, os.str());
  }
  MsdaForwardTiling t;
  std::memset(&t, 0, sizeof(t));
  t.batch = s.batch;
  t.numKeys = s.num_keys;
  t.numQueries = s.num_queries;
  t.totalRows = rows;
  t.heads = static_cast<uint32_t>(s.heads);
  t.channels = static_cast<uint32_t>(s.channels);
  t.levels = static_cast<uint32_t>(s.levels.size());
  t.points = static_cast<uint32_t>(s.points);
  t.dtype = dtype;
  t.design = design;
  t.blockNum = std::max<uint32_t>(1, std::min(block_num, kChorusMaxBlocks));
  t.bufferNum = 2;
  t.cPad = static_cast<uint32_t>(align_up(s.channels, kB / sz));
  const uint64_t lp = uint64_t(t.levels) * t.points;
  t.locRowBytes = static_cast<uint32_t>(align_up(2 * lp * sz, kB));
  t.attnRowBytes = static_cast<uint32_t>(align_up(lp * sz, kB));
  for (uint32_t l = 0; l < t.levels; ++l) {
    const MsdaLevelShape& lv = s.levels[l];
    if (lv.height * lv.width > kMsdaMaxLevelPixels) {
      os << op << ": level " << l << " has " << lv.height << "x" << lv.width << " = " << lv.height * lv.width
         << " pixels; the kernels support at most 2^24 per level (exact fp32 pixel arithmetic)";
      return fail(reason, os.str());
    }
    if (lv.start + lv.height * lv.width > s.num_keys) {
      os << op << ": level " << l << " (start " << lv.start << ", " << lv.height << "x" << lv.width
         << ") runs past num_keys = " << s.num_keys;
      return fail(reason, os.str());
    }
    t.levelStart[l] = lv.start;
    t.levelH[l] = static_cast<uint32_t>(lv.height);
    t.levelW[l] = static_cast<uint32_t>(lv.width);
    t.levelUbOffset[l] = kMsdaNotResident;
  }
  if (design == kMsdaNaive) {
    t.tileQ = 1;
    t.pointGroup = 1;
    t.ubBytes = static_cast<uint32_t>(std::min<uint64_t>(msda_forward_ub_bytes(t), UINT32_MAX));
    if (msda_forward_ub_bytes(t) > ub_bytes) {
      os << op << " (naive design): one row (heads*levels*points = " << s.heads * lp
         << " points, heads*channels = " << s.heads * s.channels << ") needs " << msda_forward_ub_bytes(t)
         << " bytes of UB; the budget is " << ub_bytes;
      return fail(reason, os.str());
    }
    *out = t;
    return true;
  }
  // Codesign. For a few splits of the UB between compute buffers and resident levels: the
  // largest tile (all P points per chunk first, then fewer) within the compute share, then the
  // resident levels and the window that fit the rest. The split with the most resident levels
  // wins (every level carries the same number of points, and a resident level needs no DMA per
  // point), then the one whose window reaches kWindowTarget pixels, then the largest tile.
  t.hasDmaLevels = 1;
  const uint64_t rows_per_block = std::max<uint64_t>(1, ceil_div(rows, t.blockNum));
  const uint32_t q_hi = static_cast<uint32_t>(std::min<uint64_t>({rows_per_block, kMaxTileQ, kChorusMaxBlockCount}));
  bool found = false;
  MsdaForwardTiling best = t;
  for (uint32_t pct : {55u, 40u, 25u, 15u, 100u}) {
    if (pct == 100 && found) break;  // the whole UB for compute only when no split fits
    const uint64_t budget = uint64_t(ub_bytes) * pct / 100;
    MsdaForwardTiling c = t;
    bool tile_ok = false;
    for (uint32_t pg = c.points; pg >= 1 && !tile_ok; pg = pg > 1 ? std::min(pg - 1, (pg + 1) / 2) : 0) {
      set_tile(&c, 1, pg);
      if (msda_forward_ub_bytes(c) > budget || !gather_ok(c)) continue;
      uint32_t lo = 1, hi = q_hi;
      while (lo < hi) {
        const uint32_t m = (lo + hi + 1) / 2;
        set_tile(&c, m, pg);
        if (msda_forward_ub_bytes(c) <= budget && gather_ok(c))
          lo = m;
        else
          hi = m - 1;
      }
      set_tile(&c, lo, pg);
      tile_ok = true;
    }
    if (!tile_ok) continue;
    choose_resident(&c, s, rows_per_block, ub_bytes);
    choose_window(&c, ub_bytes);
    const uint64_t work = uint64_t(c.tileQ) * c.pointGroup, best_work = uint64_t(best.tileQ) * best.pointGroup;
    const uint32_t win = std::min(c.windowPixels, kWindowTarget), best_win = std::min(best.windowPixels, kWindowTarget);
    if (!found || c.numResident > best.numResident ||
        (c.numResident == best.numResident && (win > best_win || (win == best_win && work > best_work)))) {
      best = c;
      found = true;
    }
  }
  if (!found) {
    set_tile(&t, 1, 1);
    os << op << ": the smallest co-designed tile (1 query, 1 point per chunk) needs " << msda_forward_ub_bytes(t)
       << " bytes of UB for levels*points = " << lp << ", channels = " << s.channels << " ("
       << (sz == 4 ? "fp32" : "16-bit") << "); the budget is " << ub_bytes;
    if (!gather_ok(t))
      os << "; and its gathers move tileN = " << t.tileN << " / chunkElems = " << t.chunkElems
         << " elements, above the " << kMaxGatherElems << " a count-form Gather takes (8-bit repeat count)";
    os << ". Use design='naive' or fewer levels*points / channels";
    return fail(reason, os.str());
  }
  t = best;
  t.hasDmaLevels = t.numResident < t.levels ? 1 : 0;
  t.ubBytes = static_cast<uint32_t>(msda_forward_ub_bytes(t));
  *out = t;
  return true;
}

}  // namespace ascend
}  // namespace npu_ops

// Tiling data of the MSDA forward AscendC kernels (csrc/ascend/kernels/msda_forward.h): the POD
// struct the host fills (msda_forward_tiling.h) and the kernels read from GM. Device-safe: no std
// library beyond <cstdint>, no functions. Same layout rules as chorus_tiling_data.h: uint64_t
// fields first, then uint32_t, size a multiple of 8; read word by word on the scalar pipe.
//
// Problem (mmcv semantics): value [B, S, H, C], sampling_locations [B, Nq, H, L, P, 2] (x, y),
// attention_weights [B, Nq, H, L, P], output [B, Nq, H*C]; all contiguous, one dtype
// (float32 / float16 / bfloat16). Rows = B * Nq (batch, query) pairs; block b of blockNum owns
// rows [b * rows / blockNum, (b + 1) * rows / blockNum): every output row is written by one
// block, once, with plain DMA (no atomics). Blocks may straddle a batch boundary; the
// co-designed kernel splits its query tiles there (a tile never mixes two batches).
//
// Two kernel designs share this struct (one kernel entry each, see msda_forward.cpp):
//  * kMsdaNaive: one row at a time; scalar coordinate maths; one DMA per valid corner
//    (C elements), fp32 multiply-accumulate per corner. The baseline of the cost model.
//  * kMsdaCodesign: per head h, per tile of up to tileQ rows of one batch: the (x, y, weight)
//    of the tile's L*P points per query are loaded with two strided DMAs, de-interleaved with
//    Gather, and all coordinate maths is vectorised over the tile (tileN points). Corner rows
//    are then fetched per (level, group of pointGroup points) into a [pointGroup, 4, tileQ,
//    cPad] chunk, either by a vector Gather from the UB-resident copy of the level (levels
//    with levelUbOffset != kMsdaNotResident: the level's [h*w, C] slice of head h is loaded
//    once per (block, batch, head)), from a window of the level loaded for the tile (other
//    levels, when the tile's corners fit windowPixels), or by DMA with both horizontal corners
//    (x0, x1) of a row in one instruction. The chunk is weighted and folded into the fp32
//    accumulator with a handful of vector instructions. The gather region (resident levels,
//    then the window) starts with one zero row that invalid corners read.
#pragma once

#include <cstdint>

#include "chorus_tiling_data.h"  // ChorusDtype, UB and DMA limits

namespace npu_ops {
namespace ascend {

constexpr uint32_t kMsdaMaxLevels = 64;               // levels a tiling can describe
constexpr uint32_t kMsdaNotResident = 0xFFFFFFFFu;    // levelUbOffset: level fetched by DMA
constexpr uint64_t kMsdaMaxLevelPixels = 1ull << 24;  // h*w per level: exact in fp32 pixel maths

enum MsdaDesign : uint32_t {
  kMsdaCodesign = 0,
  kMsdaNaive = 1,
};

struct MsdaForwardTiling {
  uint64_t batch;                       // B
  uint64_t numKeys;                     // S = sum of h_l * w_l (value's key axis)
  uint64_t numQueries;                  // Nq
  uint64_t totalRows;                   // B * Nq
  uint64_t levelStart[kMsdaMaxLevels];  // first key of each level (level_start_index)
  uint32_t heads;                       // H
  uint32_t channels;                    // C
  uint32_t levels;                      // L (<= kMsdaMaxLevels)
  uint32_t points;                      // P
  uint32_t dtype;                       // ChorusDtype of value / locations / weights / output
  uint32_t design;                      // MsdaDesign the tiling was computed for (launch the matching entry)
  uint32_t blockNum;                    // blocks the tiling was computed for (launch exactly this many)
  uint32_t cPad;                        // C rounded up to 32 bytes of the dtype: UB row stride of a corner, elements
  uint32_t tileQ;                       // codesign: rows per tile (<= 4095); naive: 1
  uint32_t pointGroup;                  // codesign: points per corner chunk (1..P)
  uint32_t tileN;                       // codesign: tileQ * L * P rounded up to 64 (vector length of the point maths)
  uint32_t chunkElems;                  // codesign: pointGroup * 4 * tileQ * cPad (elements of a corner chunk)
  uint32_t locRowBytes;                 // UB bytes of one row's (x, y) pairs of one head: 2*L*P*sizeof(T) rounded to 32
  uint32_t attnRowBytes;                // UB bytes of one row's weights of one head: L*P*sizeof(T) rounded to 32
  uint32_t residentBytes;               // codesign: UB bytes of the zero row + resident levels (0: neither)
  uint32_t numResident;                 // codesign: levels gathered from UB
  uint32_t hasDmaLevels;                // codesign: 1 if some level is fetched by DMA
  uint32_t bufferNum;                   // depth-1 TQue buffers per queue (2 = double buffering)
  uint32_t ubBytes;                     // UB bytes the kernel allocates (sum of its InitBuffer sizes, 32 B rounded)
  // codesign: pixels of the window region (0: none). For a DMA level, when the corners of a tile's
  // valid points span a rectangle of at most windowPixels pixels, the rectangle is loaded (one DMA
  // per image row) to windowUbOffset in the gather region and gathered from like a resident level.
  uint32_t windowPixels;
  uint32_t windowUbOffset;  // codesign: byte offset of the window in the gather region
  uint32_t reserved;
  uint32_t levelH[kMsdaMaxLevels];
  uint32_t levelW[kMsdaMaxLevels];
  // codesign: byte offset of the level's first pixel row in the resident region, or
  // kMsdaNotResident. The region starts with one zero row (offset 0) that invalid corners read.
  uint32_t levelUbOffset[kMsdaMaxLevels];
};
static_assert(sizeof(MsdaForwardTiling) % 8 == 0, "tiling size must be a multiple of 8");

}  // namespace ascend
}  // namespace npu_ops

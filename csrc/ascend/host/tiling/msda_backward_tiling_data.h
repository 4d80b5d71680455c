// Tiling data of the MSDA backward AscendC kernels (csrc/ascend/kernels/msda_backward.h): the POD
// structs the host fills and the kernels read from GM. Device-safe: <cstdint> only, no functions.
// The host-side tiling functions are in msda_backward_tiling.h.
//
// The tiling buffer (the kernels' last GM argument) is a MsdaBwdTiling header followed by
// `levels` MsdaBwdLevel entries and, for the co-designed kernel, at tablesOffset, its index
// tables (uint32 words, built on the host so no core spends scalar cycles on them):
//   W row [lps] (float: W_l of point j of a row, -1 for padding points), H row [lps],
//   deint [2 np] (byte offsets: (x, y) pairs -> x plane | y plane, in the data dtype),
//   inter [2 tileRows lps] (fp32 grad_x plane | grad_y plane -> (x, y) pairs),
//   bcast [4 group 8] (coefficient planes -> [point * 4 + corner][8 lanes]),
//   trans [4 * 16 * 8] ([point * 4 + corner][lane] partial sums of a unit -> [lane][corner][point]).
// msda_backward_tiling_blob() builds the whole buffer. Layout rules as for the
// Chorus tilings: uint64_t fields first, then uint32_t, sizes multiples of 8 bytes; the kernel
// reads the words with GlobalTensor<uint32_t>::GetValue.
//
// Problem (all tensors contiguous):
//   grad_output [bs, Nq, H*C], value [bs, Nk, H, C], sampling_locations [bs, Nq, H, L, P, 2],
//   attention_weights [bs, Nq, H, L, P] in the kernel dtype; grad_value [bs, Nk, H, C],
//   grad_sampling_locations and grad_attention_weights (same shapes) in the kernel dtype.
//   A "row" is one (b, q, h): row r = (b * Nq + q) * H + h owns L*P points.
//
// Work split: a "slice" is one (b, h), S = bs * H slices; its rows (b, q, h) are H rows apart
// in GM. A unit is one query chunk of a slice (sliceChunks chunks of chunkQueries queries);
// block i takes the units [i*U/n, (i+1)*U/n) of U = S * sliceChunks and walks each in tiles of
// tileRows queries. Head-major units keep one head's small-level slices of value and grad_value
// resident in UB (privatisation) for many queries.
//   deterministic = 0: sliceChunks ~ 8 * blockNum / S; grad_value is accumulated with DMA
//     atomic adds. Contention: concurrently active blocks work on different heads (different
//     bytes of every grad_value row) or, when they share a head, on different query chunks
//     (for an encoder: different spatial bands of the maps); point groups are visited in an
//     order rotated by the block index so blocks sharing a head start on different levels; the
//     small levels are not shared at all (UB privatisation, one flush per slice visit).
//   deterministic = 1: sliceChunks = 1: every grad_value element is accumulated by one block
//     only, in an order fixed by the data: the result does not depend on the block count or the
//     block order. At most bs * H blocks have work (the cost of the mode).
//
// Per-tile windows (codesign, levels not privatised): when the valid corners of one (tile, level)
// fall in a rectangle of at most winRows pixels (after earlier levels of the tile took their
// share), the kernel loads that rectangle of value (one DMA per window row), gathers and
// accumulates in UB and flushes the fp32 window with one atomic DMA per window row; otherwise
// the level's corners of that tile go through the paired (x0, x1) DMAs. The choice is made per
// (tile, level) from the data, identically for every block count.
//
// grad_value accumulation: into grad_value itself for fp32, else into an fp32 GM workspace of
// workspaceBytes bytes (kernel argument `workspace`) that the kernel casts into grad_value at the
// end (round-to-nearest-even). The kernel zeroes the accumulation buffer itself (each block a
// disjoint slice, then SyncAll): the host need not zero anything. Because of the SyncAll the
// launch must not use more blocks than the AI vector cores that can be resident at once (the
// runtime's vector core count).
#pragma once

#include <cstdint>

namespace npu_ops {
namespace ascend {

enum MsdaBwdDesign : uint32_t {
  kMsdaBwdNaive = 0,     // scalar coordinate math, one DMA per corner, one atomic DMA per corner
  kMsdaBwdCodesign = 1,  // vectorised coordinates, merged (x0, x1) DMAs, UB privatisation, ...
};

// Data types of the float tensors (matches ChorusDtype's numbering).
enum MsdaBwdDtype : uint32_t {
  kMsdaBwdFloat32 = 0,
  kMsdaBwdFloat16 = 1,
  kMsdaBwdBFloat16 = 2,
};

constexpr uint32_t kMsdaBwdUnitPoints = 16;      // points per transpose unit; rows are padded to it
constexpr uint32_t kMsdaBwdChunkElems = 2048;    // fp32 elements per zeroing / final-cast chunk
constexpr uint32_t kMsdaBwdMaxRowStride = 2040;  // cs limit: repeat strides are 8-bit 32 B units
constexpr uint32_t kMsdaBwdSlackElems = 64;      // tail slack of buffers read by masked repeats
constexpr uint32_t kMsdaBwdPlanes = 34;          // codesign: fp32 per-point planes (kernel enum Plane)
constexpr uint32_t kMsdaBwdIntPlanes = 3;        // codesign: int32 per-point planes (x0, y0, corner code)

struct MsdaBwdTiling {
  uint64_t batch;           // bs
  uint64_t numKeys;         // Nk
  uint64_t numQueries;      // Nq
  uint64_t rows;            // bs * Nq * H
  uint64_t accElems;        // bs * Nk * H * C: fp32 elements accumulated (grad_value or workspace)
  uint64_t workspaceBytes;  // fp32 workspace the launcher allocates (0 for fp32 data)
  uint64_t sliceChunks;     // query chunks per (b, h) slice (1 when deterministic)
  uint64_t chunkQueries;    // queries per chunk (the last chunk of a slice may be shorter)
  uint32_t heads;           // H
  uint32_t channels;        // C
  uint32_t levels;          // L (MsdaBwdLevel entries after this header)
  uint32_t points;          // P
  uint32_t lp;              // L * P
  uint32_t lps;             // L * P rounded up to kMsdaBwdUnitPoints (points per row in UB)
  uint32_t cs;              // UB row stride of a channel row, elements: C rounded up to 32 B of the dtype
  uint32_t tileRows;        // rows per tile
  uint32_t np;              // tileRows * lps rounded up to 64 (length of the per-point planes)
  uint32_t group;           // codesign: points per corner group (16, 8, 4 or 2; divides 16)
  uint32_t privRows;        // codesign: channel rows of the UB privatisation buffer (0: none)
  uint32_t tablesOffset;    // codesign: byte offset of the index tables in the tiling buffer (32 B aligned)
  uint32_t tablesWords;     // codesign: 32-bit words of the index tables (0 for naive)
  uint32_t design;          // MsdaBwdDesign
  uint32_t deterministic;   // 0 / 1
  uint32_t dtype;           // MsdaBwdDtype
  uint32_t blockNum;        // blocks the tiling was computed for (launch exactly this many)
  uint32_t ubBytes;         // UB bytes the kernel allocates
  uint32_t winRows;         // codesign: channel rows of the per-tile window buffers (0: none)
};
static_assert(sizeof(MsdaBwdTiling) % 8 == 0, "tiling size must be a multiple of 8");

struct MsdaBwdLevel {
  uint64_t start;    // level_start_index[l]
  uint32_t height;   // h_l
  uint32_t width;    // w_l
  uint32_t priv;     // 1: the level's grad_value slice is accumulated in UB (codesign)
  uint32_t privRow;  // first channel row of the level in the privatisation buffer
};
static_assert(sizeof(MsdaBwdLevel) == 24, "level entry is 24 bytes");

}  // namespace ascend
}  // namespace npu_ops

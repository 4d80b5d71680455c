// Tiling data of the Chorus AscendC kernels (masked_blend, amplified_softmax): the POD
// structs the host fills and the kernels read from GM, plus the enums and constants both
// sides share. Device-safe: no std library beyond <cstdint>, no functions. The host-side
// tiling functions are declared in chorus_tiling.h.
//
// Layout rules: only uint64_t and uint32_t fields, all uint64_t fields first, the size a
// multiple of 8 bytes. A kernel reads the struct from its last GM_ADDR argument word by word
// (GlobalTensor<uint32_t>::GetValue; a uint64_t field is two little-endian words).
#pragma once

#include <cstdint>

namespace npu_ops {
namespace ascend {

// Data types of the kernels' floating-point tensors (each kernel entry is compiled per dtype).
enum ChorusDtype : uint32_t {
  kChorusFloat32 = 0,
  kChorusFloat16 = 1,
  kChorusBFloat16 = 2,
};

// Usable UB on dav-2201 (Atlas A2/A3): 192 KB - 256 B (ASC_UB_SIZE) - 8 KB (reserved by the
// toolchain unless --cce-disable-asc-reserved-ubuf).
constexpr uint32_t kChorusUbBytes = 192u * 1024u - 256u - 8u * 1024u;  // 188160
constexpr uint32_t kChorusBlockBytes = 32u;                            // UB block: alignment of every UB operand
constexpr uint32_t kChorusMaxBlockCount = 4095u;                       // DataCopy(Pad) blockCount limit
constexpr uint32_t kChorusMaxBlocks = 65535u;                          // launch numBlocks limit

// ---------------------------------------------------------------------------------------------
// masked_blend
//
// Canonical problem (host side, see CanonicalizeMaskedBlend): fresh/cached/out are
// [outer, mid, inner] (contiguous), the mask is [outer, 1, inner] (contiguous, broadcast over
// mid). Two kernel modes:
//  * kBlendColumnMask (inner > 1, or mid == 1): a row of `inner` data values shares its mask
//    with the other `mid` rows of the same `outer` index. Tile = up to tileRows rows of one
//    column chunk of one `outer` index; tiles ordered (outer, chunk, row block).
//    numRowBlocks = ceil(mid / tileRows), numColChunks = ceil(inner / tileCols).
//  * kBlendRowMask (inner == 1 and mid > 1, e.g. tokens [B, N, D] with mask [B, N, 1]): a row
//    of `mid` data values has one mask scalar. Tile = up to tileRows rows (consecutive
//    `outer` indices) of one column chunk; tiles ordered (row block, chunk).
//    numRowBlocks = ceil(outer / tileRows), numColChunks = ceil(mid / tileCols).
// numTiles = numRowBlocks * numColChunks (* outer in column mode); block b of blockNum takes
// the contiguous tile range [b * numTiles / blockNum, (b + 1) * numTiles / blockNum).
//
// Backward: grad_mask (fp32, outer * inner values) is ACCUMULATED with atomic adds by all
// blocks: the host must zero-fill it before the launch. It is not touched for u8 masks
// (the host may pass any valid pointer, e.g. a 4-byte dummy).
enum MaskedBlendMode : uint32_t {
  kBlendColumnMask = 0,
  kBlendRowMask = 1,
};

enum MaskedBlendMaskKind : uint32_t {
  kBlendMaskFloat = 0,  // mask has the data dtype (soft or hard values)
  kBlendMaskU8 = 1,     // mask is 0/1 bytes (bool viewed as uint8)
};

struct MaskedBlendTiling {
  uint64_t outer;  // canonical [outer, mid, inner]
  uint64_t mid;
  uint64_t inner;
  uint64_t numTiles;      // total tiles over all blocks
  uint64_t numRowBlocks;  // see the mode description above
  uint32_t numColChunks;
  uint32_t tileRows;   // rows per tile (<= 4095)
  uint32_t tileCols;   // data elements per row chunk (last chunk may be shorter)
  uint32_t mode;       // MaskedBlendMode
  uint32_t maskKind;   // MaskedBlendMaskKind
  uint32_t dtype;      // ChorusDtype of fresh/cached/out (and of the mask for kBlendMaskFloat)
  uint32_t backward;   // 0: forward tiling, 1: backward tiling (different UB plan)
  uint32_t blockNum;   // blocks the tiling was computed for (launch exactly this many)
  uint32_t bufferNum;  // TQue depth-1 buffers per queue (2 = double buffering, 1 = single)
  uint32_t ubBytes;    // UB bytes the kernel allocates (InitBuffer sizes, 32 B rounded)
};
static_assert(sizeof(MaskedBlendTiling) % 8 == 0, "tiling size must be a multiple of 8");

// ---------------------------------------------------------------------------------------------
// amplified_softmax
//
// scores/out/grad [rows, cols] (contiguous), alpha and grad_alpha fp32 [groups, cols]; row r
// uses alpha row r / rowsPerGroup (rowsPerGroup = rows / groups). Softmax over cols.
//   renormalize = 1: out = softmax(scale * s + ln(alpha)); rows with every alpha = 0 give 0.
//   renormalize = 0: out = softmax(scale * s) * alpha.
// Block b of blockNum takes rows [b * rows / blockNum, (b + 1) * rows / blockNum); a tile is up
// to tileRows rows of one alpha group. Backward: grad_alpha is ACCUMULATED with atomic adds
// by all blocks: the host must zero-fill it before the launch.
struct AmplifiedSoftmaxTiling {
  uint64_t rows;            // R
  uint64_t groups;          // G (R % G == 0)
  uint64_t rowsPerGroup;    // R / G
  uint32_t cols;            // L
  uint32_t colsPad;         // row stride in UB, elements: L rounded up to 32 B of the data dtype
  uint32_t colsPad64;       // L rounded up to 64 (fp32 alpha rows, Compare/Select counts)
  uint32_t tileRows;        // rows per tile (<= 4095)
  uint32_t reduceTmpElems;  // fp32 elements of the ReduceMax/ReduceSum scratch buffer
  uint32_t scaleBits;       // the float `scale`, bit pattern
  uint32_t renormalize;     // 1 / 0
  uint32_t dtype;           // ChorusDtype of scores/out/grad/grad_scores
  uint32_t backward;        // 0: forward tiling, 1: backward tiling
  uint32_t blockNum;        // blocks the tiling was computed for
  uint32_t bufferNum;       // 2 = double buffering; 1 when a row is too long to double-buffer
  uint32_t ubBytes;         // UB bytes the kernel allocates
};
static_assert(sizeof(AmplifiedSoftmaxTiling) % 8 == 0, "tiling size must be a multiple of 8");

}  // namespace ascend
}  // namespace npu_ops

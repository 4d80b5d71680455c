// DataCopy / DataCopyPad and DMA atomics of the AscendC emulator.
//   GM -> UB runs on MTE2, UB -> GM on MTE3, UB -> UB on the vector pipe.
#pragma once

#include "emu_tensor.h"

namespace npu_ops_emu {

template <class T>
void CheckUbTensor(const char* api, const char* which, const AscendC::LocalTensor<T>& t, uint64_t bytes) {
  auto& c = Ctx();
  if (!t.valid_) c.Fail(api, std::string(which) + " is not an allocated LocalTensor");
  if (t.off_ % 32) c.Fail(api, std::string(which) + " starts at UB byte " + Str(t.off_) + ", not 32-byte aligned");
  if (bytes > uint64_t(t.size_) * sizeof(T))
    c.Fail(api, std::string(which) + " holds " + Str(uint64_t(t.size_) * sizeof(T)) + " bytes; the copy touches " +
                    Str(bytes));
}

// Copy length rule: hardware silently rounds count*sizeof(T) down to 32 B; strict mode rejects it.
template <class T>
uint64_t CopyLen(const char* api, uint64_t count) {
  auto& c = Ctx();
  uint64_t bytes = count * sizeof(T);
  if (bytes % 32) {
    if (c.opt.strict_copy_len)
      c.Fail(api, "count " + Str(count) + " x " + Str(sizeof(T)) + " B = " + Str(bytes) +
                      " bytes is not a multiple of 32 (hardware silently drops the last " + Str(bytes % 32) +
                      " bytes; use DataCopyPad for tails)");
    bytes = bytes / 32 * 32;
  }
  return bytes;
}

template <class T>
T AddElem(T a, T b) {
  if constexpr (std::is_same_v<T, bfloat16_t>) {
    return bfloat16_t(float(a) + float(b));
  } else if constexpr (std::is_same_v<T, half>) {
    return static_cast<half>(float(a) + float(b));
  } else {
    return static_cast<T>(a + b);
  }
}

// UB -> GM bytes of MTE3 op `seq`, accumulating when SetAtomicAdd<T> is on.
template <class T>
void StoreGm(const char* api, T* gm, uint32_t ub_off, uint64_t bytes, uint32_t seq) {
  auto& c = Ctx();
  bool atomic = c.atomic_type >= 0;
  if (atomic && c.atomic_type != TagOf<T>())
    c.Fail(api, std::string("atomic add mode is ") + TypeName(c.atomic_type) + " but the copy moves " +
                    TypeName(TagOf<T>()) + " data");
  GmRegion* r = nullptr;
  size_t off = 0;
  if (!atomic && bytes) {
    // Two MTE3 copies into overlapping GM bytes may land in either order: they need
    // PipeBarrier<PIPE_MTE3> between them (docs/zh/api/SIMD-API/基础API/同步控制/核内同步/
    // PipeBarrier(ISASI).md). Atomic accumulations commute and are exempt.
    r = FindRegion(gm, bytes, api);
    r->EnsureShadow();
    off = reinterpret_cast<uint8_t*>(gm) - r->base;
    for (size_t i = off; i < off + bytes; ++i) {
      uint32_t w = r->mte3_seq[i];
      if (w && w != seq && r->writer[i] == c.block_idx && c.self_done[kMte3] < w)
        c.Fail(api, "writes GM bytes of buffer '" + r->name + "' from byte " + Str(i) + " that " +
                        c.op_names[kMte3][w - 1] +
                        " on the same pipe (MTE3) also writes, with nothing ordering the two: copies into "
                        "overlapping GM bytes need PipeBarrier<PIPE_MTE3> between them");
    }
  }
  GmAccess(api, gm, bytes, true, atomic);
  if (r)
    for (size_t i = off; i < off + bytes; ++i) r->mte3_seq[i] = seq;
  if (!atomic) {
    std::memcpy(gm, c.ub.data() + ub_off, bytes);
    return;
  }
  for (uint64_t i = 0; i < bytes / sizeof(T); ++i) {
    T cur, add;
    std::memcpy(&cur, reinterpret_cast<uint8_t*>(gm) + i * sizeof(T), sizeof(T));
    std::memcpy(&add, c.ub.data() + ub_off + i * sizeof(T), sizeof(T));
    T sum = AddElem(cur, add);
    std::memcpy(reinterpret_cast<uint8_t*>(gm) + i * sizeof(T), &sum, sizeof(T));
  }
}

// One DMA instruction on `pipe` (kMte2: GM -> UB, kMte3: UB -> GM) moving `bursts` contiguous GM
// segments; an UB -> GM copy while SetAtomicAdd is on is also an atomic DMA.
inline void CountDma(int pipe, uint64_t bursts) {
  auto& c = Ctx();
  c.stats->dma_ops++;
  c.stats->dma_bursts += bursts;
  if (pipe == kMte2) {
    c.stats->dma_in_ops++;
  } else {
    c.stats->dma_out_ops++;
    if (c.atomic_type >= 0) c.stats->atomic_dma_ops++;
  }
}

}  // namespace npu_ops_emu

namespace AscendC {

// ---- DataCopy, count form ----------------------------------------------------------------------

template <typename T>
void DataCopy(const LocalTensor<T>& dst, const GlobalTensor<T>& src, const uint32_t count) {
  const char* api = "DataCopy(GM->UB)";
  uint64_t bytes = npu_ops_emu::CopyLen<T>(api, count);
  if (bytes == 0) return;
  npu_ops_emu::CheckUbTensor(api, "dst", dst, bytes);
  src.CheckIndex(api, 0, bytes / sizeof(T));
  auto& c = npu_ops_emu::Ctx();
  uint32_t s = c.Issue(npu_ops_emu::kMte2, api);
  npu_ops_emu::GmAccess(api, src.base_, bytes, false, false);
  c.Write(npu_ops_emu::kMte2, s, api, dst.off_, bytes);
  std::memcpy(c.ub.data() + dst.off_, src.base_, bytes);
  npu_ops_emu::CountDma(npu_ops_emu::kMte2, 1);
}

template <typename T>
void DataCopy(const GlobalTensor<T>& dst, const LocalTensor<T>& src, const uint32_t count) {
  const char* api = "DataCopy(UB->GM)";
  uint64_t bytes = npu_ops_emu::CopyLen<T>(api, count);
  if (bytes == 0) return;
  npu_ops_emu::CheckUbTensor(api, "src", src, bytes);
  dst.CheckIndex(api, 0, bytes / sizeof(T));
  auto& c = npu_ops_emu::Ctx();
  uint32_t s = c.Issue(npu_ops_emu::kMte3, api);
  c.Read(npu_ops_emu::kMte3, s, api, src.off_, bytes);
  npu_ops_emu::StoreGm(api, dst.base_, src.off_, bytes, s);
  npu_ops_emu::CountDma(npu_ops_emu::kMte3, 1);
}

template <typename T>
void DataCopy(const LocalTensor<T>& dst, const LocalTensor<T>& src, const uint32_t count) {
  const char* api = "DataCopy(UB->UB)";
  uint64_t bytes = npu_ops_emu::CopyLen<T>(api, count);
  if (bytes == 0) return;
  npu_ops_emu::CheckUbTensor(api, "dst", dst, bytes);
  npu_ops_emu::CheckUbTensor(api, "src", src, bytes);
  auto& c = npu_ops_emu::Ctx();
  uint32_t s = c.Issue(npu_ops_emu::kV, api);
  c.Read(npu_ops_emu::kV, s, api, src.off_, bytes);
  c.Write(npu_ops_emu::kV, s, api, dst.off_, bytes);
  std::memmove(c.ub.data() + dst.off_, c.ub.data() + src.off_, bytes);
  c.stats->vector_ops++;
}

// ---- DataCopy, DataCopyParams form (lengths and gaps in 32-byte blocks) ---------------------------

namespace emu_detail {
inline bool CheckParams(const char* api, const DataCopyParams& p) {
  if (p.blockCount > 4095)
    npu_ops_emu::Ctx().Fail(api, "blockCount " + npu_ops_emu::Str(p.blockCount) + " exceeds 4095");
  return p.blockCount != 0 && p.blockLen != 0;  // zero sizes are NOPs on dav-2201
}
}  // namespace emu_detail

template <typename T>
void DataCopy(const LocalTensor<T>& dst, const GlobalTensor<T>& src, const DataCopyParams& p) {
  const char* api = "DataCopy(GM->UB, DataCopyParams)";
  if (!emu_detail::CheckParams(api, p)) return;
  auto& c = npu_ops_emu::Ctx();
  uint64_t len = uint64_t(p.blockLen) * 32, src_step = len + uint64_t(p.srcStride) * 32,
           dst_step = len + uint64_t(p.dstStride) * 32;
  npu_ops_emu::CheckUbTensor(api, "dst", dst, dst_step * (p.blockCount - 1) + len);
  if ((src_step * (p.blockCount - 1) + len) % sizeof(T)) c.Fail(api, "GM extent is not a whole number of elements");
  src.CheckIndex(api, 0, (src_step * (p.blockCount - 1) + len) / sizeof(T));
  uint32_t s = c.Issue(npu_ops_emu::kMte2, api);
  for (uint32_t i = 0; i < p.blockCount; ++i) {
    auto* g = reinterpret_cast<uint8_t*>(src.base_) + i * src_step;
    npu_ops_emu::GmAccess(api, g, len, false, false);
    c.Write(npu_ops_emu::kMte2, s, api, dst.off_ + i * dst_step, len);
    std::memcpy(c.ub.data() + dst.off_ + i * dst_step, g, len);
  }
  npu_ops_emu::CountDma(npu_ops_emu::kMte2, p.blockCount);
}

template <typename T>
void DataCopy(const GlobalTensor<T>& dst, const LocalTensor<T>& src, const DataCopyParams& p) {
  const char* api = "DataCopy(UB->GM, DataCopyParams)";
  if (!emu_detail::CheckParams(api, p)) return;
  auto& c = npu_ops_emu::Ctx();
  uint64_t len = uint64_t(p.blockLen) * 32, src_step = len + uint64_t(p.srcStride) * 32,
           dst_step = len + uint64_t(p.dstStride) * 32;
  npu_ops_emu::CheckUbTensor(api, "src", src, src_step * (p.blockCount - 1) + len);
  dst.CheckIndex(api, 0, (dst_step * (p.blockCount - 1) + len) / sizeof(T));
  uint32_t s = c.Issue(npu_ops_emu::kMte3, api);
  for (uint32_t i = 0; i < p.blockCount; ++i) {
    c.Read(npu_ops_emu::kMte3, s, api, src.off_ + i * src_step, len);
    auto* g = reinterpret_cast<T*>(reinterpret_cast<uint8_t*>(dst.base_) + i * dst_step);
    npu_ops_emu::StoreGm(api, g, src.off_ + i * src_step, len, s);
  }
  npu_ops_emu::CountDma(npu_ops_emu::kMte3, p.blockCount);
}

template <typename T>
void DataCopy(const LocalTensor<T>& dst, const LocalTensor<T>& src, const DataCopyParams& p) {
  const char* api = "DataCopy(UB->UB, DataCopyParams)";
  if (!emu_detail::CheckParams(api, p)) return;
  auto& c = npu_ops_emu::Ctx();
  uint64_t len = uint64_t(p.blockLen) * 32, src_step = len + uint64_t(p.srcStride) * 32,
           dst_step = len + uint64_t(p.dstStride) * 32;
  npu_ops_emu::CheckUbTensor(api, "src", src, src_step * (p.blockCount - 1) + len);
  npu_ops_emu::CheckUbTensor(api, "dst", dst, dst_step * (p.blockCount - 1) + len);
  uint32_t s = c.Issue(npu_ops_emu::kV, api);
  for (uint32_t i = 0; i < p.blockCount; ++i) {
    c.Read(npu_ops_emu::kV, s, api, src.off_ + i * src_step, len);
    c.Write(npu_ops_emu::kV, s, api, dst.off_ + i * dst_step, len);
    std::memmove(c.ub.data() + dst.off_ + i * dst_step, c.ub.data() + src.off_ + i * src_step, len);
  }
  c.stats->vector_ops++;
}

// ---- DataCopyPad (GM side in bytes; UB blocks padded to 32 B) -----------------------------------

namespace emu_detail {
inline bool CheckExt(const char* api, const DataCopyExtParams& p, size_t elem) {
  auto& c = npu_ops_emu::Ctx();
  if (p.blockCount > 4095) c.Fail(api, "blockCount " + npu_ops_emu::Str(p.blockCount) + " exceeds 4095");
  if (p.blockLen > 2097151) c.Fail(api, "blockLen " + npu_ops_emu::Str(p.blockLen) + " bytes exceeds 2097151");
  if (p.blockLen % elem)
    c.Fail(api, "blockLen " + npu_ops_emu::Str(p.blockLen) +
                    " bytes is not a multiple of sizeof(T) = " + npu_ops_emu::Str(elem));
  return p.blockCount != 0 && p.blockLen != 0;
}
}  // namespace emu_detail

template <typename T>
void DataCopyPad(const LocalTensor<T>& dst, const GlobalTensor<T>& src, const DataCopyExtParams& p,
                 const DataCopyPadExtParams<T>& pad) {
  const char* api = "DataCopyPad(GM->UB)";
  if (!emu_detail::CheckExt(api, p, sizeof(T))) return;
  auto& c = npu_ops_emu::Ctx();
  uint64_t lp = uint64_t(pad.leftPadding) * sizeof(T), rp = uint64_t(pad.rightPadding) * sizeof(T);
  if (lp > 32 || rp > 32)
    c.Fail(api, "leftPadding/rightPadding take " + npu_ops_emu::Str(lp) + "/" + npu_ops_emu::Str(rp) +
                    " bytes; each must be <= 32 bytes");
  uint64_t row = (lp + p.blockLen + rp + 31) / 32 * 32;
  uint64_t dst_step = row + uint64_t(p.dstStride) * 32, src_step = uint64_t(p.blockLen) + p.srcStride;
  npu_ops_emu::CheckUbTensor(api, "dst", dst, dst_step * (p.blockCount - 1) + row);
  src.CheckIndex(api, 0, (src_step * (p.blockCount - 1) + p.blockLen + sizeof(T) - 1) / sizeof(T));
  uint32_t s = c.Issue(npu_ops_emu::kMte2, api);
  for (uint32_t i = 0; i < p.blockCount; ++i) {
    auto* g = reinterpret_cast<uint8_t*>(src.base_) + i * src_step;
    uint32_t u = static_cast<uint32_t>(dst.off_ + i * dst_step);
    npu_ops_emu::GmAccess(api, g, p.blockLen, false, false);
    c.Write(npu_ops_emu::kMte2, s, api, u, row);
    uint8_t* ub = c.ub.data() + u;
    std::memset(ub, npu_ops_emu::kPoisonByte, row);  // undefined padding / dummy bytes
    std::memcpy(ub + lp, g, p.blockLen);
    if (pad.isPad) {
      for (uint64_t k = 0; k < lp; k += sizeof(T)) std::memcpy(ub + k, &pad.paddingValue, sizeof(T));
      for (uint64_t k = 0; k < rp; k += sizeof(T)) std::memcpy(ub + lp + p.blockLen + k, &pad.paddingValue, sizeof(T));
    }
    uint64_t used = lp + p.blockLen + rp;
    if (lp == 0 && rp == 0) {  // documented: the dummy repeats the block's first element
      for (uint64_t k = used; k + sizeof(T) <= row; k += sizeof(T)) std::memcpy(ub + k, g, sizeof(T));
    } else if (pad.isPad) {
      for (uint64_t k = used; k + sizeof(T) <= row; k += sizeof(T)) std::memcpy(ub + k, &pad.paddingValue, sizeof(T));
    }
  }
  npu_ops_emu::CountDma(npu_ops_emu::kMte2, p.blockCount);
}

template <typename T>
void DataCopyPad(const GlobalTensor<T>& dst, const LocalTensor<T>& src, const DataCopyExtParams& p) {
  const char* api = "DataCopyPad(UB->GM)";
  if (!emu_detail::CheckExt(api, p, sizeof(T))) return;
  auto& c = npu_ops_emu::Ctx();
  uint64_t row = (uint64_t(p.blockLen) + 31) / 32 * 32;
  uint64_t src_step = row + uint64_t(p.srcStride) * 32, dst_step = uint64_t(p.blockLen) + p.dstStride;
  npu_ops_emu::CheckUbTensor(api, "src", src, src_step * (p.blockCount - 1) + p.blockLen);
  dst.CheckIndex(api, 0, (dst_step * (p.blockCount - 1) + p.blockLen + sizeof(T) - 1) / sizeof(T));
  uint32_t s = c.Issue(npu_ops_emu::kMte3, api);
  for (uint32_t i = 0; i < p.blockCount; ++i) {
    uint32_t u = static_cast<uint32_t>(src.off_ + i * src_step);
    c.Read(npu_ops_emu::kMte3, s, api, u, p.blockLen);
    auto* g = reinterpret_cast<T*>(reinterpret_cast<uint8_t*>(dst.base_) + i * dst_step);
    npu_ops_emu::StoreGm(api, g, u, p.blockLen, s);
  }
  npu_ops_emu::CountDma(npu_ops_emu::kMte3, p.blockCount);
}

// ---- DMA atomics ----------------------------------------------------------------------------------

template <typename T>
void SetAtomicAdd() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, half> || std::is_same_v<T, bfloat16_t> ||
                    std::is_same_v<T, int32_t> || std::is_same_v<T, int16_t> || std::is_same_v<T, int8_t>,
                "SetAtomicAdd: dav-2201 accumulates float, half, bfloat16_t, int32_t, int16_t or int8_t");
  auto& c = npu_ops_emu::Ctx();
  c.atomic_type = npu_ops_emu::TagOf<T>();
  c.atomic_api = "SetAtomicAdd";
}
inline void SetAtomicNone() {
  npu_ops_emu::Ctx().atomic_type = -1;
}
inline void DisableDmaAtomic() {
  npu_ops_emu::Ctx().atomic_type = -1;
}

}  // namespace AscendC

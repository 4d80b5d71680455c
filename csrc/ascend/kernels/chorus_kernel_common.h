// Helpers shared by the Chorus AscendC kernels (masked_blend, amplified_softmax). Uses only
// the allow-listed AscendC API; the AscendC header comes from the include path.
#pragma once

#include "kernel_operator.h"

namespace npu_ops_kernels {

using AscendC::GlobalTensor;
using AscendC::LocalTensor;

constexpr uint32_t kUbBlock = 32;

template <typename A, typename B>
struct SameType {
  static constexpr bool value = false;
};
template <typename A>
struct SameType<A, A> {
  static constexpr bool value = true;
};

__aicore__ inline uint64_t CeilDiv(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}
__aicore__ inline uint32_t AlignUp(uint32_t a, uint32_t b) {
  return (a + b - 1) / b * b;
}
__aicore__ inline uint64_t Min64(uint64_t a, uint64_t b) {
  return a < b ? a : b;
}

__aicore__ inline float NegInf() {
  union {
    uint32_t u;
    float f;
  } v;
  v.u = 0xff800000u;
  return v.f;
}

// Reads a POD tiling struct from its GM buffer, word by word on the scalar pipe.
class TilingReader {
 public:
  __aicore__ inline void Init(GM_ADDR tiling, uint32_t bytes) {
    gm_.SetGlobalBuffer(reinterpret_cast<__gm__ uint32_t*>(tiling), bytes / 4);
  }
  __aicore__ inline uint32_t U32(uint32_t byteOffset) { return gm_.GetValue(byteOffset / 4); }
  __aicore__ inline uint64_t U64(uint32_t byteOffset) {
    const uint64_t lo = gm_.GetValue(byteOffset / 4);
    const uint64_t hi = gm_.GetValue(byteOffset / 4 + 1);
    return lo | (hi << 32);
  }

 private:
  GlobalTensor<uint32_t> gm_;
};

#define NPU_OPS_TILING_U32(reader, Struct, field) (reader).U32(__builtin_offsetof(Struct, field))
#define NPU_OPS_TILING_U64(reader, Struct, field) (reader).U64(__builtin_offsetof(Struct, field))

// The fp32 view to compute in: the tensor itself for float data, else `work` after Cast.
template <typename T>
__aicore__ inline LocalTensor<float> LoadF32(const LocalTensor<T>& src, const LocalTensor<float>& work,
                                             uint32_t count) {
  if constexpr (SameType<T, float>::value) {
    return src;
  } else {
    AscendC::Cast(work, src, AscendC::RoundMode::CAST_NONE, count);
    return work;
  }
}

// Where to put an fp32 result that ends in `out`: `out` itself for float data, else `work`
// (then StoreF32 casts it down with round-to-nearest-even).
template <typename T>
__aicore__ inline LocalTensor<float> ResultF32(const LocalTensor<T>& out, const LocalTensor<float>& work) {
  if constexpr (SameType<T, float>::value) {
    return out;
  } else {
    return work;
  }
}

template <typename T>
__aicore__ inline void StoreF32(const LocalTensor<T>& out, const LocalTensor<float>& res, uint32_t count) {
  if constexpr (!SameType<T, float>::value) {
    AscendC::Cast(out, res, AscendC::RoundMode::CAST_RINT, count);
  }
}

// Scalar reads of vector results (V -> S) and vector writes after scalar accesses (S -> V).
// Each is an immediate SetFlag/WaitFlag pair; the queues never use these events.
__aicore__ inline void SyncVToS() {
  AscendC::SetFlag<AscendC::HardEvent::V_S>(EVENT_ID0);
  AscendC::WaitFlag<AscendC::HardEvent::V_S>(EVENT_ID0);
}
__aicore__ inline void SyncSToV() {
  AscendC::SetFlag<AscendC::HardEvent::S_V>(EVENT_ID0);
  AscendC::WaitFlag<AscendC::HardEvent::S_V>(EVENT_ID0);
}

// An immediate SetFlag/WaitFlag pair on an id the pipe hands out (FetchEventID: the lowest id no
// TQue buffer holds; asc-devkit impl/basic_api/kernel_tpipe_impl.h). A literal EVENT_ID may be one
// that a freed or enqueued buffer holds, and a second SetFlag on a set flag is undefined.
template <AscendC::HardEvent E>
__aicore__ inline void PipeSync(AscendC::TPipe& pipe) {
  const event_t id = static_cast<event_t>(pipe.FetchEventID(E));
  AscendC::SetFlag<E>(id);
  AscendC::WaitFlag<E>(id);
}

}  // namespace npu_ops_kernels

// Positive sample: a double-buffered vector add in the Kernel Launch style.
// Must pass tools/ascend_typecheck/check.sh.
#include "kernel_operator.h"

using namespace AscendC;

namespace {
constexpr int32_t kBufferNum = 2;
constexpr uint32_t kTile = 256;

class VectorAdd {
 public:
  __aicore__ inline VectorAdd() {}
  __aicore__ inline void Init(GM_ADDR x, GM_ADDR y, GM_ADDR z, uint32_t total) {
    const uint32_t perBlock = total / GetBlockNum();
    const uint64_t start = static_cast<uint64_t>(perBlock) * GetBlockIdx();
    len_ = perBlock;
    xGm_.SetGlobalBuffer(reinterpret_cast<__gm__ float*>(x) + start, perBlock);
    yGm_.SetGlobalBuffer(reinterpret_cast<__gm__ float*>(y) + start, perBlock);
    zGm_.SetGlobalBuffer(reinterpret_cast<__gm__ float*>(z) + start, perBlock);
    pipe_.InitBuffer(inX_, kBufferNum, kTile * sizeof(float));
    pipe_.InitBuffer(inY_, kBufferNum, kTile * sizeof(float));
    pipe_.InitBuffer(outZ_, kBufferNum, kTile * sizeof(float));
  }
  __aicore__ inline void Process() {
    for (uint32_t off = 0; off < len_; off += kTile) {
      LocalTensor<float> x = inX_.AllocTensor<float>();
      LocalTensor<float> y = inY_.AllocTensor<float>();
      DataCopy(x, xGm_[off], kTile);
      DataCopy(y, yGm_[off], kTile);
      inX_.EnQue(x);
      inY_.EnQue(y);
      LocalTensor<float> xi = inX_.DeQue<float>();
      LocalTensor<float> yi = inY_.DeQue<float>();
      LocalTensor<float> z = outZ_.AllocTensor<float>();
      Add(z, xi, yi, static_cast<int32_t>(kTile));
      outZ_.EnQue<float>(z);
      inX_.FreeTensor(xi);
      inY_.FreeTensor(yi);
      LocalTensor<float> zo = outZ_.DeQue<float>();
      DataCopyExtParams p{1, static_cast<uint32_t>(kTile * sizeof(float)), 0, 0, 0};
      DataCopyPad(zGm_[off], zo, p);
      outZ_.FreeTensor(zo);
    }
  }

 private:
  TPipe pipe_;
  TQue<TPosition::VECIN, 1> inX_, inY_;
  TQue<TPosition::VECOUT, 1> outZ_;
  GlobalTensor<float> xGm_, yGm_, zGm_;
  uint32_t len_ = 0;
};
}  // namespace

extern "C" __global__ __aicore__ void vector_add_ok(GM_ADDR x, GM_ADDR y, GM_ADDR z) {
  VectorAdd op;
  op.Init(x, y, z, 8 * 1024);
  op.Process();
}

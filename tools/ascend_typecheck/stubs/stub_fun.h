// Stand-in for the closed CCE instruction model header `stub_fun.h` of CANN's CPU-debug
// library, written for npu_ops. It only has to make the public AscendC API headers
// (asc-devkit) parse and instantiate under g++ -fsyntax-only; nothing here executes.
//
// - pipe_t / event_t and the small enums carry the member names the headers use.
// - every CCE builtin is a variadic function template returning `StubAny`, which
//   converts to any type. So the *builtins* accept anything, while the AscendC API
//   templates layered on top of them keep their real, documented signatures: a kernel
//   that calls the API wrongly still fails to compile.
#ifndef NPU_OPS_TYPECHECK_STUB_FUN_H
#define NPU_OPS_TYPECHECK_STUB_FUN_H

#include <cstdint>

#include "cce_enums.h"

// A value convertible to anything: what a stubbed builtin "returns".
struct StubAny {
  template <typename T>
  constexpr operator T() const {
    return T{};
  }
};

// Builtin results are also used directly in integer expressions (masks, shifts, compares).
#define NPU_OPS_STUB_BINOP(op, R)       \
  template <typename T>                 \
  constexpr R operator op(StubAny, T) { \
    return R{};                         \
  }                                     \
  template <typename T>                 \
  constexpr R operator op(T, StubAny) { \
    return R{};                         \
  }
NPU_OPS_STUB_BINOP(+, int64_t)
NPU_OPS_STUB_BINOP(-, int64_t)
NPU_OPS_STUB_BINOP(*, int64_t)
NPU_OPS_STUB_BINOP(/, int64_t)
NPU_OPS_STUB_BINOP(%, int64_t)
NPU_OPS_STUB_BINOP(&, int64_t)
NPU_OPS_STUB_BINOP(|, int64_t)
NPU_OPS_STUB_BINOP(^, int64_t)
NPU_OPS_STUB_BINOP(<<, int64_t)
NPU_OPS_STUB_BINOP(>>, int64_t)
NPU_OPS_STUB_BINOP(<, bool)
NPU_OPS_STUB_BINOP(>, bool)
NPU_OPS_STUB_BINOP(<=, bool)
NPU_OPS_STUB_BINOP(>=, bool)
NPU_OPS_STUB_BINOP(==, bool)
NPU_OPS_STUB_BINOP(!=, bool)
#undef NPU_OPS_STUB_BINOP

#define NPU_OPS_STUB_BUILTIN(name) \
  template <typename... Args>      \
  inline StubAny name(Args...) {   \
    return StubAny{};              \
  }

#include "stub_builtins.inc"

#undef NPU_OPS_STUB_BUILTIN

#endif  // NPU_OPS_TYPECHECK_STUB_FUN_H

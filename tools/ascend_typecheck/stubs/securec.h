// Minimal stand-in for Huawei's bounds-checked C library header (libboundscheck
// `securec.h`), enough for the asc-tools CPU-debug headers to parse. Written for npu_ops.
#ifndef NPU_OPS_TYPECHECK_SECUREC_H
#define NPU_OPS_TYPECHECK_SECUREC_H

#include <cstddef>
#include <cstdio>
#include <cstring>

typedef int errno_t;
#ifndef EOK
#define EOK 0
#endif

inline errno_t memset_s(void* dest, size_t destMax, int c, size_t count) {
  if (dest == nullptr || count > destMax) {
    return 1;
  }
  std::memset(dest, c, count);
  return EOK;
}

inline errno_t memcpy_s(void* dest, size_t destMax, const void* src, size_t count) {
  if (dest == nullptr || src == nullptr || count > destMax) {
    return 1;
  }
  std::memcpy(dest, src, count);
  return EOK;
}

inline errno_t memmove_s(void* dest, size_t destMax, const void* src, size_t count) {
  if (dest == nullptr || src == nullptr || count > destMax) {
    return 1;
  }
  std::memmove(dest, src, count);
  return EOK;
}

inline errno_t strcpy_s(char* dest, size_t destMax, const char* src) {
  if (dest == nullptr || src == nullptr || std::strlen(src) >= destMax) {
    return 1;
  }
  std::strcpy(dest, src);
  return EOK;
}

#define sprintf_s(buf, max, ...) std::snprintf((buf), (max), __VA_ARGS__)
#define snprintf_s(buf, max, cnt, ...) std::snprintf((buf), (max), __VA_ARGS__)

#endif  // NPU_OPS_TYPECHECK_SECUREC_H

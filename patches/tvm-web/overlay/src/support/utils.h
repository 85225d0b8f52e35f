/*
 * mlcbuild's own implementation of src/support/utils.h, an interface that the
 * sources in the apache-tvm wheel include but do not ship.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Small string and hashing helpers.  The string functions accept anything
 * with data()/size() (std::string, ffi::String, std::string_view) or a C string.
 */
#ifndef TVM_SUPPORT_UTILS_H_
#define TVM_SUPPORT_UTILS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace tvm {
namespace support {

namespace detail {
inline std::string_view AsView(const char* s) { return std::string_view(s); }
template <typename S>
std::string_view AsView(const S& s) {
  return std::string_view(s.data(), s.size());
}
}  // namespace detail

/*! \return Whether `str` is non-empty and made only of decimal digits. */
template <typename S>
bool IsNumber(const S& str) {
  std::string_view s = detail::AsView(str);
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

/*! \return The pieces of `str` between occurrences of `delim` (a trailing empty piece is dropped). */
template <typename S>
std::vector<std::string> Split(const S& str, char delim) {
  std::string_view s = detail::AsView(str);
  std::vector<std::string> parts;
  size_t begin = 0;
  while (begin < s.size()) {
    size_t end = s.find(delim, begin);
    if (end == std::string_view::npos) end = s.size();
    parts.emplace_back(s.substr(begin, end - begin));
    begin = end + 1;
  }
  return parts;
}

template <typename S, typename P>
bool StartsWith(const S& str, const P& prefix) {
  std::string_view s = detail::AsView(str), p = detail::AsView(prefix);
  return s.size() >= p.size() && s.compare(0, p.size(), p) == 0;
}

template <typename S, typename P>
bool EndsWith(const S& str, const P& suffix) {
  std::string_view s = detail::AsView(str), p = detail::AsView(suffix);
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

/*!
 * \brief Mix `value` into the running hash `key` (order-dependent).  Uses fixed
 *  arithmetic rather than std::hash so results agree across platforms.
 * \return The combined hash; the arguments are not modified.
 */
template <typename T, std::enable_if_t<std::is_convertible<T, uint64_t>::value, bool> = true>
inline uint64_t HashCombine(uint64_t key, const T& value) {
  // splitmix64 finalizer on the value, folded into an FNV-style step on the key.
  uint64_t x = static_cast<uint64_t>(value) + 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return (key * 0x100000001b3ULL) ^ x ^ (x >> 31);
}

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_UTILS_H_

/*
 * mlcbuild's own implementation of <tvm/support/serializer.h>, an interface
 * that the sources in the apache-tvm wheel include but do not ship.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Wire format (little-endian, byte-compatible with what TVM writes):
 *   arithmetic / enum   raw bytes of the value (enum: its underlying type)
 *   string / bytes      uint64 length, then the bytes
 *   sequence            uint64 count, then each element
 *   pair                first, then second
 *   map                 uint64 count, then key/value pairs
 *   DLDataType          uint8 code, uint8 bits, uint16 lanes
 *   DLDevice            int32 device_type, int32 device_id
 */
#ifndef TVM_SUPPORT_SERIALIZER_H_
#define TVM_SUPPORT_SERIALIZER_H_

#include <dlpack/dlpack.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/endian.h>
#include <tvm/ffi/string.h>
#include <tvm/support/io.h>

#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tvm {
namespace support {

namespace detail {
/*! \brief Arithmetic types that can be copied to/from the wire as one block. */
template <typename T>
constexpr bool kBlockCopyable =
    std::is_arithmetic_v<T> && !std::is_same_v<T, bool> && TVM_FFI_IO_NO_ENDIAN_SWAP;

inline void WriteLength(Stream* strm, size_t n) { strm->Write(static_cast<uint64_t>(n)); }

inline bool ReadLength(Stream* strm, size_t* n) {
  uint64_t v;
  if (!strm->Read(&v)) return false;
  *n = static_cast<size_t>(v);
  return static_cast<uint64_t>(*n) == v;
}

inline void WriteBlob(Stream* strm, const char* data, size_t n) {
  WriteLength(strm, n);
  if (n != 0) strm->Write(data, n);
}

inline bool ReadBlob(Stream* strm, std::string* out) {
  size_t n;
  if (!ReadLength(strm, &n)) return false;
  out->resize(n);
  return n == 0 || strm->Read(&(*out)[0], n) == n;
}

// Maps of any kind are stored as a counted list of (key, value).
template <typename MapT>
void WriteMap(Stream* strm, const MapT& m) {
  WriteLength(strm, m.size());
  for (const auto& kv : m) {
    strm->Write(kv.first);
    strm->Write(kv.second);
  }
}

template <typename K, typename V, typename Insert>
bool ReadMap(Stream* strm, Insert insert) {
  size_t n;
  if (!ReadLength(strm, &n)) return false;
  for (size_t i = 0; i < n; ++i) {
    K key;
    V value;
    if (!strm->Read(&key) || !strm->Read(&value)) return false;
    insert(std::move(key), std::move(value));
  }
  return true;
}
}  // namespace detail

template <typename T>
struct Serializer<T, std::enable_if_t<std::is_arithmetic_v<T>>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const T& value) {
    T tmp = value;
    if constexpr (!TVM_FFI_IO_NO_ENDIAN_SWAP) ffi::ByteSwap(&tmp, sizeof(T), 1);
    strm->Write(&tmp, sizeof(T));
  }
  static bool Read(Stream* strm, T* out) {
    if (strm->Read(out, sizeof(T)) != sizeof(T)) return false;
    if constexpr (!TVM_FFI_IO_NO_ENDIAN_SWAP) ffi::ByteSwap(out, sizeof(T), 1);
    return true;
  }
};

template <typename T>
struct Serializer<T, std::enable_if_t<std::is_enum_v<T>>> {
  static constexpr bool enabled = true;
  using Underlying = std::underlying_type_t<T>;
  static void Write(Stream* strm, const T& value) {
    Serializer<Underlying>::Write(strm, static_cast<Underlying>(value));
  }
  static bool Read(Stream* strm, T* out) {
    Underlying v;
    if (!Serializer<Underlying>::Read(strm, &v)) return false;
    *out = static_cast<T>(v);
    return true;
  }
};

template <>
struct Serializer<std::string> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const std::string& s) {
    detail::WriteBlob(strm, s.data(), s.size());
  }
  static bool Read(Stream* strm, std::string* out) { return detail::ReadBlob(strm, out); }
};

template <>
struct Serializer<ffi::String> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const ffi::String& s) {
    detail::WriteBlob(strm, s.data(), s.size());
  }
  static bool Read(Stream* strm, ffi::String* out) {
    std::string tmp;
    if (!detail::ReadBlob(strm, &tmp)) return false;
    *out = ffi::String(std::move(tmp));
    return true;
  }
};

template <>
struct Serializer<ffi::Bytes> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const ffi::Bytes& b) {
    detail::WriteBlob(strm, b.data(), b.size());
  }
  static bool Read(Stream* strm, ffi::Bytes* out) {
    std::string tmp;
    if (!detail::ReadBlob(strm, &tmp)) return false;
    *out = ffi::Bytes(std::move(tmp));
    return true;
  }
};

template <typename T, typename Alloc>
struct Serializer<std::vector<T, Alloc>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const std::vector<T, Alloc>& vec) {
    detail::WriteLength(strm, vec.size());
    if constexpr (detail::kBlockCopyable<T>) {
      if (!vec.empty()) strm->Write(vec.data(), vec.size() * sizeof(T));
    } else {
      for (const T& v : vec) Serializer<T>::Write(strm, v);
    }
  }
  static bool Read(Stream* strm, std::vector<T, Alloc>* out) {
    size_t n;
    if (!detail::ReadLength(strm, &n)) return false;
    out->clear();
    if constexpr (detail::kBlockCopyable<T>) {
      out->resize(n);
      return n == 0 || strm->Read(out->data(), n * sizeof(T)) == n * sizeof(T);
    } else {
      // Grow element by element so a corrupt count cannot force a huge allocation.
      for (size_t i = 0; i < n; ++i) {
        T v;
        if (!Serializer<T>::Read(strm, &v)) return false;
        out->push_back(std::move(v));
      }
      return true;
    }
  }
};

template <typename T>
struct Serializer<ffi::Array<T>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const ffi::Array<T>& arr) {
    detail::WriteLength(strm, arr.size());
    for (const T& v : arr) Serializer<T>::Write(strm, v);
  }
  static bool Read(Stream* strm, ffi::Array<T>* out) {
    size_t n;
    if (!detail::ReadLength(strm, &n)) return false;
    ffi::Array<T> result;
    for (size_t i = 0; i < n; ++i) {
      T v;
      if (!Serializer<T>::Read(strm, &v)) return false;
      result.push_back(std::move(v));
    }
    *out = std::move(result);
    return true;
  }
};

template <typename A, typename B>
struct Serializer<std::pair<A, B>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const std::pair<A, B>& p) {
    Serializer<A>::Write(strm, p.first);
    Serializer<B>::Write(strm, p.second);
  }
  static bool Read(Stream* strm, std::pair<A, B>* out) {
    return Serializer<A>::Read(strm, &out->first) && Serializer<B>::Read(strm, &out->second);
  }
};

template <typename K, typename V, typename H, typename E, typename Alloc>
struct Serializer<std::unordered_map<K, V, H, E, Alloc>> {
  using MapT = std::unordered_map<K, V, H, E, Alloc>;
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const MapT& m) { detail::WriteMap(strm, m); }
  static bool Read(Stream* strm, MapT* out) {
    out->clear();
    return detail::ReadMap<K, V>(strm, [out](K&& k, V&& v) { (*out)[std::move(k)] = std::move(v); });
  }
};

template <typename K, typename V, typename C, typename Alloc>
struct Serializer<std::map<K, V, C, Alloc>> {
  using MapT = std::map<K, V, C, Alloc>;
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const MapT& m) { detail::WriteMap(strm, m); }
  static bool Read(Stream* strm, MapT* out) {
    out->clear();
    return detail::ReadMap<K, V>(strm, [out](K&& k, V&& v) { (*out)[std::move(k)] = std::move(v); });
  }
};

template <typename K, typename V>
struct Serializer<ffi::Map<K, V>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const ffi::Map<K, V>& m) { detail::WriteMap(strm, m); }
  static bool Read(Stream* strm, ffi::Map<K, V>* out) {
    ffi::Map<K, V> result;
    bool ok = detail::ReadMap<K, V>(strm, [&result](K&& k, V&& v) {
      result.Set(std::move(k), std::move(v));
    });
    if (ok) *out = std::move(result);
    return ok;
  }
};

template <>
struct Serializer<DLDataType> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const DLDataType& t) {
    strm->Write(t.code);
    strm->Write(t.bits);
    strm->Write(t.lanes);
  }
  static bool Read(Stream* strm, DLDataType* t) {
    return strm->Read(&t->code) && strm->Read(&t->bits) && strm->Read(&t->lanes);
  }
};

template <>
struct Serializer<DLDevice> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const DLDevice& dev) {
    strm->Write(static_cast<int32_t>(dev.device_type));
    strm->Write(static_cast<int32_t>(dev.device_id));
  }
  static bool Read(Stream* strm, DLDevice* dev) {
    int32_t type, id;
    if (!strm->Read(&type) || !strm->Read(&id)) return false;
    dev->device_type = static_cast<DLDeviceType>(type);
    dev->device_id = id;
    return true;
  }
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_SERIALIZER_H_

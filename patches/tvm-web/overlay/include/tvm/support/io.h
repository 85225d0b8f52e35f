/*
 * mlcbuild's own implementation of <tvm/support/io.h>, an interface that the
 * sources in the apache-tvm wheel include but do not ship.
 * SPDX-License-Identifier: Apache-2.0
 *
 * A binary stream: subclasses provide the two raw byte operations, and the
 * typed Read/Write helpers route through Serializer<T> (see serializer.h).
 */
#ifndef TVM_SUPPORT_IO_H_
#define TVM_SUPPORT_IO_H_

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace tvm {
namespace support {

class Stream;

/*!
 * \brief How a value of type T is written to / read from a Stream.
 *
 * Specializations set `enabled = true` and provide
 *   static void Write(Stream* strm, const T& value);
 *   static bool Read(Stream* strm, T* out);   // false on short/invalid input
 * The second parameter allows enable_if-based partial specializations.
 */
template <typename T, typename = void>
struct Serializer {
  static constexpr bool enabled = false;
};

/*! \brief Abstract byte stream. */
class Stream {
 public:
  // Virtual order (Read, Write, destructor) matches the Stream in TVM's own
  // builds, so the vtable layout agrees with code compiled against those.

  /*! \brief Read up to `size` bytes into `ptr`; returns the number actually read. */
  virtual size_t Read(void* ptr, size_t size) = 0;
  /*! \brief Write `size` bytes from `ptr`; returns the number written. */
  virtual size_t Write(const void* ptr, size_t size) = 0;
  virtual ~Stream() = default;

  // Typed helpers.  Subclasses overriding the raw methods must re-expose these
  // with `using Stream::Read; using Stream::Write;` (C++ name hiding).

  template <typename T>
  void Write(const T& value) {
    static_assert(Serializer<T>::enabled, "type has no tvm::support::Serializer");
    Serializer<T>::Write(this, value);
  }

  template <typename T>
  bool Read(T* out) {
    static_assert(Serializer<T>::enabled, "type has no tvm::support::Serializer");
    return Serializer<T>::Read(this, out);
  }

  template <typename T>
  void WriteArray(const T* data, size_t count) {
    for (size_t i = 0; i < count; ++i) Write(data[i]);
  }

  template <typename T>
  bool ReadArray(T* data, size_t count) {
    for (size_t i = 0; i < count; ++i) {
      if (!Read(data + i)) return false;
    }
    return true;
  }
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_IO_H_

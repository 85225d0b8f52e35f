/*
 * mlcbuild's own implementation of src/support/bytes_io.h, an interface that
 * the sources in the apache-tvm wheel include but do not ship.
 * SPDX-License-Identifier: Apache-2.0
 *
 * In-memory byte streams:
 *   BytesInStream   reads from a caller-owned buffer (std::string, ffi::Bytes
 *                   or pointer + size); the buffer must outlive the stream.
 *   BytesOutStream  appends everything written to a caller-owned std::string.
 */
#ifndef TVM_SUPPORT_BYTES_IO_H_
#define TVM_SUPPORT_BYTES_IO_H_

#include <tvm/ffi/error.h>
#include <tvm/ffi/string.h>
#include <tvm/support/io.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace tvm {
namespace support {

class BytesInStream : public Stream {
 public:
  BytesInStream(const void* data, size_t size)
      : data_(static_cast<const char*>(data)), size_(size) {}
  explicit BytesInStream(const std::string& buf) : BytesInStream(buf.data(), buf.size()) {}
  explicit BytesInStream(const ffi::Bytes& buf) : BytesInStream(buf.data(), buf.size()) {}
  // The stream only borrows the buffer; refuse temporaries that would dangle.
  explicit BytesInStream(std::string&&) = delete;
  explicit BytesInStream(ffi::Bytes&&) = delete;

  using Stream::Read;
  using Stream::Write;

  size_t Read(void* ptr, size_t size) final {
    size_t n = std::min(size, size_ - pos_);
    if (n != 0) std::memcpy(ptr, data_ + pos_, n);
    pos_ += n;
    return n;
  }

  size_t Write(const void*, size_t) final {
    TVM_FFI_THROW(InternalError) << "BytesInStream is read-only";
    return 0;
  }

  /*! \brief Current read offset. */
  size_t Tell() const { return pos_; }
  /*! \brief Move the read offset (clamped to the end of the buffer). */
  void Seek(size_t pos) { pos_ = std::min(pos, size_); }
  /*! \brief Whether every byte has been consumed. */
  bool AtEnd() const { return pos_ == size_; }

 private:
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
};

class BytesOutStream : public Stream {
 public:
  /*! \param out String that receives the data; existing content is kept and appended to. */
  explicit BytesOutStream(std::string* out) : out_(out) {}

  using Stream::Read;
  using Stream::Write;

  size_t Write(const void* ptr, size_t size) final {
    out_->append(static_cast<const char*>(ptr), size);
    return size;
  }

  size_t Read(void*, size_t) final {
    TVM_FFI_THROW(InternalError) << "BytesOutStream is write-only";
    return 0;
  }

 private:
  std::string* out_;
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_BYTES_IO_H_

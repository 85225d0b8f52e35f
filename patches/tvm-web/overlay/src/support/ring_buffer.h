/*
 * mlcbuild's own implementation of src/support/ring_buffer.h, an interface
 * that the sources in the apache-tvm wheel include but do not ship.
 * SPDX-License-Identifier: Apache-2.0
 *
 * A growable FIFO byte queue stored in a circular buffer.
 */
#ifndef TVM_SUPPORT_RING_BUFFER_H_
#define TVM_SUPPORT_RING_BUFFER_H_

#include <tvm/ffi/error.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace tvm {
namespace support {

class RingBuffer {
 public:
  /*! \brief Capacity the buffer starts with and never shrinks below. */
  static constexpr size_t kInitCapacity = 4096;

  RingBuffer() : buf_(kInitCapacity) {}

  /*! \return Number of bytes queued and not yet read. */
  size_t bytes_available() const { return size_; }

  /*! \return Current capacity in bytes. */
  size_t capacity() const { return buf_.size(); }

  /*!
   * \brief Make room for at least `n` queued bytes in total.  A buffer much
   *  larger than needed is shrunk back so one large message does not pin memory.
   */
  void Reserve(size_t n) {
    if (n > buf_.size()) {
      Reallocate(std::max(n, buf_.size() * 2));
    } else if (buf_.size() > kInitCapacity && n * 4 < buf_.size() && size_ * 4 < buf_.size()) {
      Reallocate(std::max({kInitCapacity, n * 2, size_ * 2}));
    }
  }

  /*! \brief Dequeue exactly `size` bytes (it is an error to ask for more than available). */
  void Read(void* data, size_t size) {
    TVM_FFI_ICHECK_LE(size, size_) << "RingBuffer: not enough bytes to read";
    if (size == 0) return;
    char* out = static_cast<char*>(data);
    size_t first = std::min(size, buf_.size() - head_);
    std::memcpy(out, buf_.data() + head_, first);
    std::memcpy(out + first, buf_.data(), size - first);
    Consume(size);
  }

  /*! \brief Enqueue `size` bytes, growing as needed. */
  void Write(const void* data, size_t size) {
    if (size == 0) return;
    Reserve(size_ + size);
    const char* in = static_cast<const char*>(data);
    size_t tail = Tail();
    size_t first = std::min(size, buf_.size() - tail);
    std::memcpy(buf_.data() + tail, in, first);
    std::memcpy(buf_.data(), in + first, size - first);
    size_ += size;
  }

  /*!
   * \brief Hand up to `max_nbytes` queued bytes, as one contiguous chunk, to
   *  `fsend(const void* data, size_t size) -> size_t consumed`, and dequeue what it consumed.
   * \return Number of bytes consumed.
   */
  template <typename FSend>
  size_t ReadWithCallback(FSend fsend, size_t max_nbytes) {
    size_t chunk = std::min({max_nbytes, size_, buf_.size() - head_});
    if (chunk == 0) return 0;
    size_t n = fsend(static_cast<const void*>(buf_.data() + head_), chunk);
    TVM_FFI_ICHECK_LE(n, chunk) << "RingBuffer: callback consumed more than offered";
    Consume(n);
    return n;
  }

  /*!
   * \brief Offer free space for up to `max_nbytes` bytes, as one contiguous chunk, to
   *  `frecv(void* data, size_t size) -> size_t produced`, and enqueue what it produced.
   * \return Number of bytes enqueued.
   */
  template <typename FRecv>
  size_t WriteWithCallback(FRecv frecv, size_t max_nbytes) {
    if (max_nbytes == 0) return 0;
    Reserve(size_ + max_nbytes);
    size_t tail = Tail();
    size_t chunk = std::min(max_nbytes, buf_.size() - tail);
    size_t n = frecv(static_cast<void*>(buf_.data() + tail), chunk);
    TVM_FFI_ICHECK_LE(n, chunk) << "RingBuffer: callback produced more than offered";
    size_ += n;
    return n;
  }

 private:
  size_t Tail() const { return (head_ + size_) % buf_.size(); }

  void Consume(size_t n) {
    size_ -= n;
    head_ = size_ == 0 ? 0 : (head_ + n) % buf_.size();
  }

  // Move the queued bytes to the front of a new buffer of `cap` bytes.
  void Reallocate(size_t cap) {
    std::vector<char> next(cap);
    size_t first = std::min(size_, buf_.size() - head_);
    std::memcpy(next.data(), buf_.data() + head_, first);
    std::memcpy(next.data() + first, buf_.data(), size_ - first);
    buf_.swap(next);
    head_ = 0;
  }

  std::vector<char> buf_;
  size_t head_ = 0;  // index of the oldest queued byte
  size_t size_ = 0;  // number of queued bytes
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_RING_BUFFER_H_

/*
 * mlcbuild's own implementation of src/support/base64.h, an interface that
 * the sources in the apache-tvm wheel include but do not ship.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Streams that translate between binary data and standard base64 text
 * (RFC 4648 alphabet, '=' padding) held in another Stream.
 *   Base64OutStream  encodes what is written to it; call Finish() at the end.
 *   Base64InStream   decodes; call InitPosition() before the first Read().
 *                    Whitespace is skipped; the text ends at the end of the
 *                    source, at padding, or at the first non-base64 character.
 */
#ifndef TVM_SUPPORT_BASE64_H_
#define TVM_SUPPORT_BASE64_H_

#include <tvm/ffi/error.h>
#include <tvm/support/io.h>

#include <cstdint>
#include <string>

namespace tvm {
namespace support {

namespace base64 {
inline const char* Alphabet() {
  return "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}

/*! \return The 6-bit value of base64 digit `c`, or -1 if `c` is not a digit. */
inline int DigitValue(int c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

inline bool IsSpace(int c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f';
}
}  // namespace base64

class Base64InStream : public Stream {
 public:
  explicit Base64InStream(Stream* src) : src_(src) {}

  using Stream::Read;
  using Stream::Write;

  /*! \brief Reset the decoder and skip any whitespace before the encoded text. */
  void InitPosition() {
    nbuf_ = pos_ = 0;
    done_ = false;
    lookahead_ = NextSignificantChar();
  }

  /*! \return Whether all encoded data has been consumed. */
  bool IsEOF() {
    if (pos_ == nbuf_ && !done_) DecodeQuantum();
    return pos_ == nbuf_;
  }

  size_t Read(void* ptr, size_t size) final {
    uint8_t* out = static_cast<uint8_t*>(ptr);
    size_t n = 0;
    while (n < size) {
      if (pos_ == nbuf_) {
        if (done_) break;
        DecodeQuantum();
        continue;
      }
      out[n++] = buf_[pos_++];
    }
    return n;
  }

  size_t Write(const void*, size_t) final {
    TVM_FFI_THROW(InternalError) << "Base64InStream is read-only";
    return 0;
  }

 private:
  int RawChar() {
    unsigned char c;
    return src_->Read(&c, 1) == 1 ? c : -1;
  }

  int NextSignificantChar() {
    int c = RawChar();
    while (c != -1 && base64::IsSpace(c)) c = RawChar();
    return c;
  }

  // Decode the next group of up to four digits into buf_ (0-3 bytes).
  void DecodeQuantum() {
    nbuf_ = pos_ = 0;
    int digits[4];
    int ndigits = 0;
    while (ndigits < 4) {
      int c = lookahead_ != kNone ? lookahead_ : NextSignificantChar();
      lookahead_ = kNone;
      int v = base64::DigitValue(c);
      if (v < 0) {
        // End of text ('=' padding, end of source or a delimiter).
        done_ = true;
        break;
      }
      digits[ndigits++] = v;
    }
    TVM_FFI_CHECK(ndigits != 1, ValueError) << "Base64InStream: truncated base64 text";
    if (ndigits >= 2) buf_[nbuf_++] = static_cast<uint8_t>((digits[0] << 2) | (digits[1] >> 4));
    if (ndigits >= 3) buf_[nbuf_++] = static_cast<uint8_t>((digits[1] << 4) | (digits[2] >> 2));
    if (ndigits == 4) buf_[nbuf_++] = static_cast<uint8_t>((digits[2] << 6) | digits[3]);
    if (ndigits == 0) done_ = true;
  }

  static constexpr int kNone = -2;
  Stream* src_;
  uint8_t buf_[3];
  int nbuf_ = 0;
  int pos_ = 0;
  bool done_ = false;
  int lookahead_ = kNone;
};

class Base64OutStream : public Stream {
 public:
  explicit Base64OutStream(Stream* dst) : dst_(dst) {}

  using Stream::Read;
  using Stream::Write;

  size_t Write(const void* ptr, size_t size) final {
    const uint8_t* in = static_cast<const uint8_t*>(ptr);
    for (size_t i = 0; i < size; ++i) {
      pending_[npending_++] = in[i];
      if (npending_ == 3) EncodePending();
    }
    if (text_.size() >= kFlushThreshold) Flush();
    return size;
  }

  size_t Read(void*, size_t) final {
    TVM_FFI_THROW(InternalError) << "Base64OutStream is write-only";
    return 0;
  }

  /*!
   * \brief Encode the remaining bytes with padding and flush everything to the
   *  destination; if `end_char` is not -1 it is written after the text.
   */
  void Finish(int end_char = -1) {
    if (npending_ != 0) EncodePending();
    if (end_char != -1) text_.push_back(static_cast<char>(end_char));
    Flush();
  }

 private:
  // Encode 1-3 pending bytes as four characters ('=' for the missing ones).
  void EncodePending() {
    const char* abc = base64::Alphabet();
    uint32_t bits = uint32_t(pending_[0]) << 16;
    if (npending_ > 1) bits |= uint32_t(pending_[1]) << 8;
    if (npending_ > 2) bits |= uint32_t(pending_[2]);
    text_.push_back(abc[(bits >> 18) & 63]);
    text_.push_back(abc[(bits >> 12) & 63]);
    text_.push_back(npending_ > 1 ? abc[(bits >> 6) & 63] : '=');
    text_.push_back(npending_ > 2 ? abc[bits & 63] : '=');
    npending_ = 0;
  }

  void Flush() {
    if (!text_.empty()) dst_->Write(text_.data(), text_.size());
    text_.clear();
  }

  static constexpr size_t kFlushThreshold = 4096;
  Stream* dst_;
  uint8_t pending_[3];
  int npending_ = 0;
  std::string text_;
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_BASE64_H_

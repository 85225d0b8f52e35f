/*
 * mlcbuild's own implementation of 3rdparty/compiler-rt/builtin_fp16.h, an
 * interface that the sources in the apache-tvm wheel include but do not ship.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Conversions between IEEE-754 binary floating-point formats, written as
 * templates over the formats' storage types:
 *   __truncXfYf2__<SrcT, SrcRepT, SrcSigBits, DstT, DstRepT, DstSigBits>(a)
 *       narrowing (e.g. float -> half), rounding to nearest, ties to even;
 *       overflow gives infinity, underflow gives subnormals or signed zero.
 *   __extendXfYf2__<SrcT, SrcRepT, SrcSigBits, DstT, DstRepT, DstSigBits>(a)
 *       widening (e.g. half -> float), always exact.
 * *T is the value type (float, double, or an unsigned integer holding the
 * bits), *RepT an unsigned integer of the same width, *SigBits the number of
 * stored significand bits (half 10, float 23, double 52).  NaNs stay NaNs
 * (quieted, high payload bits kept); signs of zeros and infinities are kept.
 */
#ifndef TVM_3RDPARTY_COMPILER_RT_BUILTIN_FP16_H_
#define TVM_3RDPARTY_COMPILER_RT_BUILTIN_FP16_H_

#include <stdint.h>
#include <string.h>

namespace tvm_builtin_fp16_detail {

template <typename RepT, int SigBits>
struct FloatFormat {
  static constexpr int kBits = int(sizeof(RepT) * 8);
  static constexpr int kExpBits = kBits - SigBits - 1;
  static constexpr int kBias = (1 << (kExpBits - 1)) - 1;
  static constexpr int kExpMax = (1 << kExpBits) - 1;  // all-ones exponent: inf / nan
  static constexpr RepT kSigMask = (RepT(1) << SigBits) - 1;
  static constexpr RepT kImplicitBit = RepT(1) << SigBits;
  static constexpr RepT kQuietBit = RepT(1) << (SigBits - 1);
  static constexpr RepT kSignBit = RepT(1) << (kBits - 1);
};

template <typename To, typename From>
inline To BitCast(const From& v) {
  static_assert(sizeof(To) == sizeof(From), "size mismatch");
  To out;
  memcpy(&out, &v, sizeof(To));
  return out;
}

// Shift `sig` right by `shift` (>= 1) bits, rounding to nearest, ties to even.
template <typename RepT>
inline RepT ShiftRightRoundEven(RepT sig, int shift) {
  if (shift >= int(sizeof(RepT) * 8)) return 0;  // far below half an ulp
  RepT kept = sig >> shift;
  RepT rest = sig & ((RepT(1) << shift) - 1);
  RepT half = RepT(1) << (shift - 1);
  if (rest > half || (rest == half && (kept & 1))) ++kept;
  return kept;
}

}  // namespace tvm_builtin_fp16_detail

template <typename SrcT, typename SrcRepT, int SrcSigBits, typename DstT, typename DstRepT,
          int DstSigBits>
static inline DstT __truncXfYf2__(SrcT a) {
  using namespace tvm_builtin_fp16_detail;
  using Src = FloatFormat<SrcRepT, SrcSigBits>;
  using Dst = FloatFormat<DstRepT, DstSigBits>;
  static_assert(SrcSigBits > DstSigBits && Src::kExpBits >= Dst::kExpBits, "not a narrowing");

  const SrcRepT bits = BitCast<SrcRepT>(a);
  const DstRepT sign = (bits & Src::kSignBit) ? Dst::kSignBit : DstRepT(0);
  const int exp = int((bits >> SrcSigBits) & SrcRepT(Src::kExpMax));
  SrcRepT sig = bits & Src::kSigMask;
  DstRepT out;

  if (exp == Src::kExpMax) {  // infinity or NaN
    DstRepT payload = DstRepT(sig >> (SrcSigBits - DstSigBits));
    if (sig != 0) payload |= Dst::kQuietBit;
    out = (DstRepT(Dst::kExpMax) << DstSigBits) | payload;
  } else if (exp == 0 && sig == 0) {  // zero
    out = 0;
  } else {
    // value = sig * 2^(e - SrcSigBits) with sig normalized to have its top bit at SrcSigBits.
    int e;
    if (exp != 0) {
      e = exp - Src::kBias;
      sig |= Src::kImplicitBit;
    } else {
      e = 1 - Src::kBias;
      while (!(sig & Src::kImplicitBit)) {
        sig <<= 1;
        --e;
      }
    }
    const int dst_exp = e + Dst::kBias;
    if (dst_exp >= Dst::kExpMax) {  // too large: infinity
      out = DstRepT(Dst::kExpMax) << DstSigBits;
    } else if (dst_exp >= 1) {  // normal result
      SrcRepT r = ShiftRightRoundEven(sig, SrcSigBits - DstSigBits);
      // r includes the implicit bit; adding it to (dst_exp - 1) in the exponent field yields
      // dst_exp, and a rounding carry (r == 2 << DstSigBits) bumps the exponent, up to inf.
      out = DstRepT((SrcRepT(dst_exp - 1) << DstSigBits) + r);
    } else {  // subnormal or zero result; rounding up may reach the smallest normal
      out = DstRepT(ShiftRightRoundEven(sig, SrcSigBits - DstSigBits + 1 - dst_exp));
    }
  }
  return BitCast<DstT>(DstRepT(sign | out));
}

template <typename SrcT, typename SrcRepT, int SrcSigBits, typename DstT, typename DstRepT,
          int DstSigBits>
static inline DstT __extendXfYf2__(SrcT a) {
  using namespace tvm_builtin_fp16_detail;
  using Src = FloatFormat<SrcRepT, SrcSigBits>;
  using Dst = FloatFormat<DstRepT, DstSigBits>;
  static_assert(DstSigBits > SrcSigBits && Dst::kExpBits >= Src::kExpBits, "not a widening");
  constexpr int kShift = DstSigBits - SrcSigBits;

  const SrcRepT bits = BitCast<SrcRepT>(a);
  const DstRepT sign = (bits & Src::kSignBit) ? Dst::kSignBit : DstRepT(0);
  const int exp = int((bits >> SrcSigBits) & SrcRepT(Src::kExpMax));
  SrcRepT sig = bits & Src::kSigMask;
  DstRepT out;

  if (exp == Src::kExpMax) {  // infinity or NaN
    DstRepT payload = DstRepT(sig) << kShift;
    if (sig != 0) payload |= Dst::kQuietBit;
    out = (DstRepT(Dst::kExpMax) << DstSigBits) | payload;
  } else if (exp == 0 && sig == 0) {  // zero
    out = 0;
  } else {
    int e = exp - Src::kBias;
    if (exp == 0) {  // subnormal source: normalize (always normal in the wider format)
      e = 1 - Src::kBias;
      while (!(sig & Src::kImplicitBit)) {
        sig <<= 1;
        --e;
      }
      sig &= Src::kSigMask;
    }
    out = (DstRepT(e + Dst::kBias) << DstSigBits) | (DstRepT(sig) << kShift);
  }
  return BitCast<DstT>(DstRepT(sign | out));
}

#endif  // TVM_3RDPARTY_COMPILER_RT_BUILTIN_FP16_H_

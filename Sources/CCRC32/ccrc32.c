// CRC-32 with zlib's semantics (see include/ccrc32.h): PCLMULQDQ folding on x86_64,
// slicing-by-8 everywhere else and for buffers shorter than 16 bytes.
//
// Internally the running value is kept inverted (as zlib does): each entry point
// inverts on the way in and on the way out, so calls chain like zlib's `crc32`.
#include "ccrc32.h"

#include <string.h>

#include "ccrc32_tables.h"

// MARK: Portable path: slicing-by-8

static inline uint32_t load_le32(const unsigned char *p) {
    uint32_t value;
    memcpy(&value, p, sizeof value);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    value = __builtin_bswap32(value);
#endif
    return value;
}

// Continues the inverted CRC `c` over `len` bytes, eight at a time, then byte by byte.
static uint32_t crc32_tables(uint32_t c, const unsigned char *p, size_t len) {
    const uint32_t (*t)[256] = ol_crc32_table;
    while (len >= 8) {
        uint32_t lo = c ^ load_le32(p), hi = load_le32(p + 4);
        c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
            t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len > 0) {
        c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        len--;
    }
    return c;
}

uint32_t ol_crc32_portable(uint32_t crc, const void *buf, size_t len) {
    if (len == 0) return crc;
    return ~crc32_tables(~crc, (const unsigned char *)buf, len);
}

// The 32-byte position block of a record, as the four little-endian words say.
static inline void position_block(unsigned char block[32], uint64_t w0, uint64_t w1, uint64_t w2,
                                  uint64_t w3) {
    const uint64_t words[4] = {w0, w1, w2, w3};
    for (int i = 0; i < 4; i++) {
        for (int b = 0; b < 8; b++) block[8 * i + b] = (unsigned char)(words[i] >> (8 * b));
    }
}

static uint32_t record_portable(uint32_t previous_chain, uint64_t id_low, uint64_t id_high,
                                uint64_t segment, uint64_t offset, const void *frame, size_t len) {
    unsigned char block[32];
    position_block(block, id_low, id_high, segment, offset);
    uint32_t c = crc32_tables(~previous_chain, block, sizeof block);
    if (len > 0) c = crc32_tables(c, (const unsigned char *)frame, len);
    return ~c;
}

// MARK: x86_64: PCLMULQDQ folding

// Define OL_CRC32_PORTABLE_ONLY to build without it (to check the non-x86 build here).
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__)) && !defined(OL_CRC32_PORTABLE_ONLY)
#define OL_CRC32_CLMUL 1

#include <cpuid.h>
#include <immintrin.h>
#include <stdatomic.h>

// The method of "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ
// Instruction" (Gopal, Ozturk et al., Intel, 2009), as in Chromium zlib's crc32_simd.c:
// a 128-bit state is multiplied forward over the following bytes and added to them
// (folded), four states at a time over 64-byte blocks, then one over 16-byte blocks, and
// finally Barrett-reduced to 32 bits. Constants are bit-reflected: x^(k) mod P for the
// fold distances, then mu and P for the reduction.
#define OL_CLMUL __attribute__((target("pclmul,sse4.1"), always_inline)) static inline

#define K1K2 _mm_set_epi64x(0x01c6e41596, 0x0154442bd4) // fold by 64 bytes
#define K3K4 _mm_set_epi64x(0x00ccaa009e, 0x01751997d0) // fold by 16 bytes
#define K5K0 _mm_set_epi64x(0, 0x0163cd6124)            // 64 -> 32 bits
#define POLY _mm_set_epi64x(0x01f7011641, 0x01db710641) // Barrett: P and mu

// pshufb masks: 16 bytes at `shift_table + 16 - k` shift a vector up by k bytes
// (toward the end of the message), at `shift_table + 16 + k` down by k bytes; the
// bytes shifted in are zero (mask bytes with the top bit set).
static const unsigned char shift_table[48] = {
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
};

OL_CLMUL __m128i load128(const unsigned char *p) { return _mm_loadu_si128((const __m128i *)p); }

// The state `x` carried forward over `next` (16 bytes), plus `next`.
OL_CLMUL __m128i fold16(__m128i x, __m128i k, __m128i next) {
    __m128i low = _mm_clmulepi64_si128(x, k, 0x00);
    __m128i high = _mm_clmulepi64_si128(x, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(low, high), next);
}

// Folds the four states over each further 64-byte block while 64 bytes remain, then
// combines them into one state (advancing `*p` and reducing `*len`).
OL_CLMUL __m128i fold64(__m128i x1, __m128i x2, __m128i x3, __m128i x4, const unsigned char **p,
                        size_t *len) {
    const __m128i k1k2 = K1K2;
    while (*len >= 64) {
        x1 = fold16(x1, k1k2, load128(*p + 0x00));
        x2 = fold16(x2, k1k2, load128(*p + 0x10));
        x3 = fold16(x3, k1k2, load128(*p + 0x20));
        x4 = fold16(x4, k1k2, load128(*p + 0x30));
        *p += 64;
        *len -= 64;
    }
    const __m128i k3k4 = K3K4;
    return fold16(fold16(fold16(x1, k3k4, x2), k3k4, x3), k3k4, x4);
}

// Folds the state `x` over `len` more bytes at `p`, and reduces it to the inverted CRC.
// The last partial block (1-15 bytes) is folded too, by reading the final 16 bytes of the
// message (the earlier of which are already in `x`), when those are readable: `len` >= 16,
// or `readable_before` (the 16 bytes before `p` are the caller's); otherwise it goes
// through the tables after the reduction.
OL_CLMUL uint32_t fold_and_reduce(__m128i x, const unsigned char *p, size_t len, int readable_before) {
    const __m128i k3k4 = K3K4;
    const int fold_tail = (len & 15) != 0 && (readable_before || len >= 16);
    while (len >= 16) {
        x = fold16(x, k3k4, load128(p));
        p += 16;
        len -= 16;
    }
    if (fold_tail) {
        // The message ends in the 16 bytes of `x`, then r more bytes. Split it as: the
        // first r bytes of `x` (moved to the end of a zeroed block: leading zeros do not
        // change the state), then the last 16 - r bytes of `x` followed by the r new ones.
        const size_t r = len;
        __m128i last = load128(p + r - 16);
        __m128i up = _mm_loadu_si128((const __m128i *)(shift_table + r));        // up by 16 - r
        __m128i down = _mm_loadu_si128((const __m128i *)(shift_table + 16 + r)); // down by r
        __m128i head = _mm_shuffle_epi8(x, up);
        __m128i rest = _mm_blendv_epi8(_mm_shuffle_epi8(x, down), last, down);
        x = fold16(head, k3k4, rest);
        len = 0;
    }

    // 128 -> 64 bits, then 64 -> 32 bits.
    const __m128i low32 = _mm_setr_epi32(~0, 0, ~0, 0);
    __m128i t = _mm_clmulepi64_si128(x, k3k4, 0x10);
    x = _mm_xor_si128(_mm_srli_si128(x, 8), t);
    t = _mm_srli_si128(x, 4);
    x = _mm_clmulepi64_si128(_mm_and_si128(x, low32), K5K0, 0x00);
    x = _mm_xor_si128(x, t);

    // Barrett reduction to 32 bits.
    const __m128i poly = POLY;
    t = _mm_clmulepi64_si128(_mm_and_si128(x, low32), poly, 0x10);
    t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), poly, 0x00);
    x = _mm_xor_si128(x, t);
    uint32_t c = (uint32_t)_mm_extract_epi32(x, 1);

    if (len > 0) c = crc32_tables(c, p, len);
    return c;
}

// The inverted CRC continued from inverted `c` over `len` >= 16 bytes.
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc32_clmul(uint32_t c, const unsigned char *p,
                                                                      size_t len) {
    __m128i x;
    if (len >= 64) {
        __m128i x1 = _mm_xor_si128(load128(p), _mm_cvtsi32_si128((int)c));
        __m128i x2 = load128(p + 0x10), x3 = load128(p + 0x20), x4 = load128(p + 0x30);
        p += 64;
        len -= 64;
        x = fold64(x1, x2, x3, x4, &p, &len);
    } else {
        x = _mm_xor_si128(load128(p), _mm_cvtsi32_si128((int)c));
        p += 16;
        len -= 16;
    }
    return fold_and_reduce(x, p, len, 1);
}

__attribute__((target("pclmul,sse4.1"))) static uint32_t record_clmul(uint32_t c, uint64_t id_low,
                                                                       uint64_t id_high, uint64_t segment,
                                                                       uint64_t offset, const unsigned char *p,
                                                                       size_t len) {
    // The position block is the first two 16-byte blocks of the message (x86_64 is
    // little-endian, so the words land in memory order).
    __m128i x1 = _mm_xor_si128(_mm_set_epi64x((long long)id_high, (long long)id_low), _mm_cvtsi32_si128((int)c));
    __m128i x2 = _mm_set_epi64x((long long)offset, (long long)segment);
    if (len >= 32) {
        __m128i x3 = load128(p), x4 = load128(p + 0x10);
        p += 32;
        len -= 32;
        return fold_and_reduce(fold64(x1, x2, x3, x4, &p, &len), p, len, 1);
    }
    return fold_and_reduce(fold16(x1, K3K4, x2), p, len, 0);
}

// 0: not checked yet, 1: no PCLMULQDQ + SSE4.1, 2: available. Racing first callers
// store the same answer, so relaxed ordering is enough.
static _Atomic int clmul_state;

static int clmul_available(void) {
    int state = atomic_load_explicit(&clmul_state, memory_order_relaxed);
    if (state == 0) {
        unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
        const unsigned int pclmul = 1u << 1, sse41 = 1u << 19; // CPUID.1:ECX
        int yes = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & pclmul) && (ecx & sse41);
        state = yes ? 2 : 1;
        atomic_store_explicit(&clmul_state, state, memory_order_relaxed);
    }
    return state == 2;
}
#endif

// MARK: Entry points

uint32_t ol_crc32(uint32_t crc, const void *buf, size_t len) {
#ifdef OL_CRC32_CLMUL
    if (len >= 16 && clmul_available()) return ~crc32_clmul(~crc, (const unsigned char *)buf, len);
#endif
    return ol_crc32_portable(crc, buf, len);
}

uint32_t ol_crc32_record(uint32_t previous_chain, uint64_t ledger_id_low, uint64_t ledger_id_high,
                         uint64_t segment, uint64_t offset, const void *frame, size_t len) {
#ifdef OL_CRC32_CLMUL
    if (clmul_available()) {
        return ~record_clmul(~previous_chain, ledger_id_low, ledger_id_high, segment, offset,
                             (const unsigned char *)frame, len);
    }
#endif
    return record_portable(previous_chain, ledger_id_low, ledger_id_high, segment, offset, frame, len);
}

int ol_crc32_accelerated(void) {
#ifdef OL_CRC32_CLMUL
    return clmul_available();
#else
    return 0;
#endif
}

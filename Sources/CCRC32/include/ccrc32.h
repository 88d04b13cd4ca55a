// CRC-32 (the zlib / IEEE 802.3 polynomial, bit-reflected 0xedb88320) for OnceLedgerFormat.
//
// Every function here gives exactly the result of zlib's `crc32(crc, buf, len)`: the
// running value is inverted before and after, so `ol_crc32(0, p, n) == crc32(0, p, n)`
// and `ol_crc32(ol_crc32(c, p, k), p + k, n - k) == ol_crc32(c, p, n)`.
//
// On x86_64 CPUs with PCLMULQDQ and SSE4.1 (checked once at run time) buffers of 16 bytes
// or more are folded with carry-less multiplication; everything else (other CPUs, other
// architectures, short buffers) uses slicing-by-8 tables. Spec: `Spec/FORMAT.md` §2.
#ifndef ONCELEDGER_CCRC32_H
#define ONCELEDGER_CCRC32_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Continues `crc` over `len` bytes at `buf` (zlib's `crc32`). `buf` may be NULL when
/// `len` is 0.
uint32_t ol_crc32(uint32_t crc, const void *buf, size_t len);

/// The record checksum of `Spec/FORMAT.md` §4.2 in one call: the CRC seeded with
/// `previous_chain` over the 32-byte position block, given as its four little-endian
/// 64-bit words (ledger id bytes 0..<8 and 8..<16, segment number, offset), then over
/// `len` bytes of `frame`. Equal to
/// `ol_crc32(ol_crc32(previous_chain, block, 32), frame, len)`.
uint32_t ol_crc32_record(uint32_t previous_chain, uint64_t ledger_id_low, uint64_t ledger_id_high,
                         uint64_t segment, uint64_t offset, const void *frame, size_t len);

/// Test hook: the portable slicing-by-8 path alone, whatever the CPU supports.
uint32_t ol_crc32_portable(uint32_t crc, const void *buf, size_t len);

/// Test hook: 1 when `ol_crc32` uses the PCLMULQDQ path on this machine, else 0.
int ol_crc32_accelerated(void);

#ifdef __cplusplus
}
#endif

#endif

import CCRC32

/// CRC-32 (the zlib / IEEE 802.3 polynomial): the same result as zlib's `crc32`, computed
/// by our C target `CCRC32` (PCLMULQDQ folding on x86_64, slicing-by-8 elsewhere; the tests
/// compare it with zlib's `crc32` byte for byte).
///
/// Spec: `Spec/FORMAT.md` §2 "Checksums".
public enum CRC32 {
    /// Continues `crc` over `bytes`. Start a fresh checksum with `crc: 0`.
    ///
    /// Same result as zlib's `crc32(crc, bytes, count)`; the C function is `ol_crc32`.
    @inlinable
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return ol_crc32(crc, base, bytes.count)
    }

    @inlinable
    public static func update(_ crc: UInt32, _ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { update(crc, $0) }
    }

    @inlinable
    public static func checksum(_ bytes: [UInt8]) -> UInt32 { update(0, bytes) }
}

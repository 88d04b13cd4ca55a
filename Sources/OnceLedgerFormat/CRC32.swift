import CZlib

/// CRC-32 (the zlib / IEEE 802.3 polynomial), computed by zlib's `crc32`.
///
/// Spec: `Spec/FORMAT.md` §2 "Checksums".
public enum CRC32 {
    /// Continues `crc` over `bytes`. Start a fresh checksum with `crc: 0`.
    ///
    /// The corresponding C function is `crc32` from zlib.
    @inlinable
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        var value = UInt(crc)
        var pointer = base.assumingMemoryBound(to: UInt8.self)
        var remaining = bytes.count
        // zlib takes a uInt length; feed at most 1 GiB at a time.
        while remaining > 0 {
            let chunk = min(remaining, 1 << 30)
            value = CZlib.crc32(value, pointer, uInt(chunk))
            pointer += chunk
            remaining -= chunk
        }
        return UInt32(truncatingIfNeeded: value)
    }

    @inlinable
    public static func update(_ crc: UInt32, _ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { update(crc, $0) }
    }

    @inlinable
    public static func checksum(_ bytes: [UInt8]) -> UInt32 { update(0, bytes) }
}

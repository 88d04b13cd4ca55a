/// Little-endian integer coding over byte arrays.
///
/// Verbs follow swift-nio's `ByteBuffer`: `write*`/`read*` advance a cursor,
/// `get*`/`set*` take an explicit offset. All on-disk integers are little-endian
/// (`Spec/FORMAT.md` §1).
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    /// Empties the buffer and keeps its capacity (a scratch buffer reused per item).
    public mutating func removeAll() { bytes.removeAll(keepingCapacity: true) }

    public mutating func writeInteger<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func writeBytes<C: Collection>(_ source: C) where C.Element == UInt8 {
        bytes.append(contentsOf: source)
    }

    public mutating func writeZeros(_ count: Int) {
        // From a static run of zeros: `repeatElement` appended one element at a time.
        var left = count
        while left > 0 {
            let chunk = min(left, ByteWriter.zeros.count)
            ByteWriter.zeros.withUnsafeBytes { bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[0..<chunk])) }
            left -= chunk
        }
    }

    private static let zeros = [UInt8](repeating: 0, count: 64)

    /// Pads with zeros to the next multiple of `alignment`.
    public mutating func writePadding(alignment: Int) {
        let padded = Alignment.roundUp(bytes.count, to: alignment)
        writeZeros(padded - bytes.count)
    }

    public mutating func setInteger<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { raw in
            for (index, byte) in raw.enumerated() { bytes[offset + index] = byte }
        }
    }

    /// A length-prefixed (u16) byte string — an array, or a string's `utf8` without
    /// building an array of it first; the caller checks the bound first.
    public mutating func writeBytes16<C: Collection>(_ source: C) where C.Element == UInt8 {
        precondition(source.count <= Int(UInt16.max), "writeBytes16 bound checked by caller")
        writeInteger(UInt16(source.count))
        writeBytes(source)
    }

    /// A length-prefixed (u32) byte string; the caller checks the bound first.
    public mutating func writeBytes32(_ source: [UInt8]) {
        precondition(source.count <= Int(UInt32.max), "writeBytes32 bound checked by caller")
        writeInteger(UInt32(source.count))
        writeBytes(source)
    }
}

/// A bounds-checked little-endian reader over untrusted bytes. Every read returns
/// `nil` instead of trapping when the input is too short.
public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var readerIndex: Int
    public let endIndex: Int

    public init(_ bytes: [UInt8], startIndex: Int = 0, endIndex: Int? = nil) {
        self.bytes = bytes
        self.readerIndex = startIndex
        self.endIndex = min(endIndex ?? bytes.count, bytes.count)
    }

    public var readableBytes: Int { max(0, endIndex - readerIndex) }

    public mutating func readInteger<T: FixedWidthInteger>(as type: T.Type = T.self) -> T? {
        let size = MemoryLayout<T>.size
        guard readableBytes >= size else { return nil }
        let value = ByteReader.getInteger(bytes, at: readerIndex, as: T.self)
        readerIndex += size
        return value
    }

    public mutating func readBytes(_ count: Int) -> [UInt8]? {
        guard count >= 0, readableBytes >= count else { return nil }
        let slice = Array(bytes[readerIndex..<(readerIndex + count)])
        readerIndex += count
        return slice
    }

    public mutating func readBytes16(max: Int) -> [UInt8]? {
        guard let length = readInteger(as: UInt16.self), Int(length) <= max else { return nil }
        return readBytes(Int(length))
    }

    public mutating func readBytes32(max: Int) -> [UInt8]? {
        guard let length = readInteger(as: UInt32.self), UInt64(length) <= UInt64(max) else { return nil }
        return readBytes(Int(length))
    }

    /// Reads an integer at `offset` without bounds checks beyond the array's own;
    /// callers check `offset + size <= bytes.count` first.
    @inlinable
    public static func getInteger<T: FixedWidthInteger>(_ bytes: [UInt8], at offset: Int, as: T.Type = T.self) -> T {
        bytes.withUnsafeBytes { raw in
            T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
    }
}

public enum ZeroScan {
    /// Index of the last nonzero byte of `raw[from..<end]`, or nil if all of it is
    /// zero — how a scanner tells preallocated space from a torn or garbled tail.
    /// Reads a word at a time from the back.
    public static func lastNonZero(_ raw: UnsafeRawBufferPointer, from: Int, end: Int) -> Int? {
        var index = end
        while index - 8 >= from {
            if raw.loadUnaligned(fromByteOffset: index - 8, as: UInt64.self) != 0 { break }
            index -= 8
        }
        while index > from {
            if raw[index - 1] != 0 { return index - 1 }
            index -= 1
        }
        return nil
    }
}

public enum Alignment {
    @inlinable
    public static func roundUp(_ value: Int, to alignment: Int) -> Int {
        (value + alignment - 1) / alignment * alignment
    }

    @inlinable
    public static func roundUp(_ value: UInt64, to alignment: UInt64) -> UInt64 {
        (value + alignment - 1) / alignment * alignment
    }
}

/// The journal-positions hint (kind 18, `Spec/FORMAT.md` §5.21, §6.7): in a version 4
/// snapshot, one hint stands for the memo entries of consecutive journal positions of one run
/// generation (§10.1: step "", names of ten digits), which it holds without their key: the
/// run generation once, then per position only its value's length, its time and its input
/// digest if it has one. Their values stay in the values section, one per position, in order,
/// each the position's whole memo entry body (§5.16), so their offsets follow by prefix sum.
///
/// Body (no padding, ends exactly after the last position):
/// ```
/// namespace   str16 (0 … 256 bytes)
/// run         str16 (1 … 1024 bytes)
/// generation  u64
/// first       u64   the first position (≤ 9 999 999 999)
/// count       u32   1 … `perHintMax`; first + count − 1 ≤ 9 999 999 999
/// count × {
///   value length  u32  0 … 1 048 576 (`valueBytesMax`)
///   time          u64
///   digest flag   u8   0 = no input, 1 = the digest follows (not all zero)
///   digest        [32] only with flag 1
/// }
/// ```
public enum JournalPositions {
    /// At most this many positions per hint, so a hint stays far below
    /// `recordBodyBytesMax` (2^18 × 45 bytes ≈ 11.8 MB).
    public static let perHintMax = 1 << 18
    /// The highest position a ten-digit name holds.
    public static let positionMax = JournalEntry.positionMax
    public static let nameBytes = JournalEntry.positionDigits
    /// Bytes of a position's memo entry body besides its namespace, run and value: the fixed
    /// 60 of §5.16 and the ten-byte name.
    public static let memoBodyFixedBytes = 60 + nameBytes

    /// The position a memo name stands for, if it is exactly ten ASCII digits: what
    /// `JournalEntry.position(ofName:)` answers, eight digits at a time (an open from segments
    /// asks once per journal position; byte by byte it was 8 % of the thread that applies them).
    @inlinable public static func position(name: UnsafeRawBufferPointer) -> UInt64? {
        guard name.count == 10, let base = name.baseAddress else { return nil }
        let head = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
        let tail = UInt64(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 8, as: UInt16.self)))
        // Every byte 0x30...0x39: high nibble 3, and low nibble + 6 without a carry out of it.
        func digits(_ word: UInt64, _ mask: UInt64) -> Bool {
            word & (0xf0f0_f0f0_f0f0_f0f0 & mask) == 0x3030_3030_3030_3030 & mask
                && ((word & 0x0f0f_0f0f_0f0f_0f0f & mask) &+ (0x0606_0606_0606_0606 & mask)) & 0xf0f0_f0f0_f0f0_f0f0 == 0
        }
        guard digits(head, .max), digits(tail, 0xffff) else { return nil }
        // The first character is the lowest byte: pairs, then fours, then the eight digits.
        var value = head & 0x0f0f_0f0f_0f0f_0f0f
        value = (value &* 10 &+ (value >> 8)) & 0x00ff_00ff_00ff_00ff
        value = (value &* 100 &+ (value >> 16)) & 0x0000_ffff_0000_ffff
        value = (value &* 10_000 &+ (value >> 32)) & 0xffff_ffff
        return value * 100 + (tail & 0x0f) * 10 + ((tail >> 8) & 0x0f)
    }

    /// The ten-digit name of `position` (≤ `positionMax`).
    public static func name(_ position: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0x30, count: nameBytes)
        var rest = position
        var index = nameBytes - 1
        while rest > 0, index >= 0 {
            bytes[index] = 0x30 + UInt8(rest % 10)
            rest /= 10
            index -= 1
        }
        return bytes
    }

    /// The body bytes of a position's memo entry (its value's body in the values section).
    @inlinable public static func memoBodyBytes(namespace: Int, run: Int, valueBytes: Int) -> Int {
        memoBodyFixedBytes + namespace + run + valueBytes
    }

    /// A decoded hint's header: ranges index the body.
    public struct Header: Sendable {
        public var namespace: Range<Int>
        public var run: Range<Int>
        public var generation: UInt64
        public var first: UInt64
        public var count: Int
        /// Where the first position's fields start.
        public var positionsStart: Int
    }

    /// One position's fields.
    public struct Position {
        public var valueBytes: UInt32
        public var timeMilliseconds: UInt64
        /// The digest's range in the body; nil: no input.
        public var digest: Range<Int>?
    }

    /// Decodes an untrusted hint body's header (the fields before the positions). Never traps.
    public static func header(_ body: UnsafeRawBufferPointer) -> Result<Header, Malformed> {
        var r = FieldReader(body)
        guard let namespace = r.text16(max: FormatLimits.namespaceBytesMax),
              let run = r.text16(max: FormatLimits.runBytesMax, nonEmpty: true),
              let generation = r.integer(UInt64.self), let first = r.integer(UInt64.self),
              let count32 = r.integer(UInt32.self)
        else { return .failure(Malformed("journal-positions hint header is malformed or exceeds a limit")) }
        let count = Int(count32)
        guard count >= 1, count <= perHintMax, first <= positionMax, positionMax - first >= UInt64(count - 1) else {
            return .failure(Malformed("journal-positions hint holds \(count) positions from \(first), outside 1 … \(perHintMax) positions of 0 … \(positionMax)"))
        }
        return .success(Header(namespace: namespace, run: run, generation: generation, first: first, count: count,
                               positionsStart: body.count - r.remaining))
    }

    /// Decodes an untrusted hint body, calling `position` for each position in order (index
    /// from 0). Returns the header, or the reason the body is malformed (`position` may have
    /// been called for the positions before the damage). Never traps.
    public static func decode(_ body: UnsafeRawBufferPointer,
                              _ position: (Int, Position) throws -> Void) rethrows -> Result<Header, Malformed> {
        let header: Header
        switch self.header(body) {
        case .success(let decoded): header = decoded
        case .failure(let malformed): return .failure(malformed)
        }
        var r = FieldReader(body)
        _ = r.fixed(header.positionsStart)
        for index in 0..<header.count {
            let number = header.first + UInt64(index)
            guard let valueBytes = r.integer(UInt32.self), valueBytes <= UInt32(FormatLimits.valueBytesMax),
                  let time = r.integer(UInt64.self), let flag = r.integer(UInt8.self), flag <= 1
            else { return .failure(Malformed("journal-positions hint: position \(number) is malformed or exceeds a limit")) }
            var digest: Range<Int>?
            if flag == 1 {
                guard let range = r.fixed(32), body[range].contains(where: { $0 != 0 }) else {
                    return .failure(Malformed("journal-positions hint: position \(number) has a digest flag without a nonzero digest"))
                }
                digest = range
            }
            try position(index, Position(valueBytes: valueBytes, timeMilliseconds: time, digest: digest))
        }
        guard r.remaining == 0 else {
            return .failure(Malformed("journal-positions hint has \(r.remaining) trailing bytes"))
        }
        return .success(header)
    }

    public struct Malformed: Error, Hashable, Sendable {
        public var reason: String
        public init(_ reason: String) { self.reason = reason }
    }

    /// Builds a hint body (the writer; the caller keeps `count` ≤ `perHintMax`).
    public struct Builder: Sendable {
        public private(set) var count = 0
        private var writer: ByteWriter
        private let countOffset: Int

        public init(namespace: UnsafeRawBufferPointer, run: UnsafeRawBufferPointer, generation: UInt64, first: UInt64) {
            writer = ByteWriter(capacity: 32 + namespace.count + run.count)
            writer.writeBytes16(namespace)
            writer.writeBytes16(run)
            writer.writeInteger(generation)
            writer.writeInteger(first)
            countOffset = writer.count
            writer.writeInteger(UInt32(0))
        }

        /// Appends the next position; `digest` is 32 bytes, all zero for no input.
        public mutating func append(valueBytes: UInt32, timeMilliseconds: UInt64, digest: UnsafeRawBufferPointer) {
            writer.writeInteger(valueBytes)
            writer.writeInteger(timeMilliseconds)
            if digest.contains(where: { $0 != 0 }) {
                writer.writeInteger(UInt8(1))
                writer.writeBytes(digest)
            } else {
                writer.writeInteger(UInt8(0))
            }
            count += 1
        }

        public var body: [UInt8] {
            var copy = writer
            copy.setInteger(UInt32(count), at: countOffset)
            return copy.bytes
        }
    }

    /// Calls `body` with the memo entry hint (§6.7: the §5.16 body with an empty value) and
    /// the value's span of each position of the valid hint `hint`, whose first value is at
    /// `firstValue`: what the hint stands for, position by position.
    public static func forEachMemoHint(_ hint: UnsafeRawBufferPointer, firstValue: UInt64,
                                       _ body: (UnsafeRawBufferPointer, SnapshotFile.ValueSpan) throws -> Void) rethrows {
        guard case .success(let header) = self.header(hint) else { return }
        // The key part is the same for every position: built once, then patched.
        var writer = ByteWriter(capacity: 64 + header.namespace.count + header.run.count + nameBytes)
        writer.writeBytes16(hint[header.namespace])
        writer.writeBytes16(hint[header.run])
        writer.writeInteger(header.generation)
        writer.writeInteger(UInt16(0))
        writer.writeInteger(UInt16(nameBytes))
        let nameAt = writer.count
        writer.writeZeros(nameBytes)
        let digestAt = writer.count
        writer.writeZeros(32)
        let timeAt = writer.count
        writer.writeInteger(UInt64(0))
        writer.writeInteger(UInt32(0))
        var memo = writer.bytes
        var offset = firstValue
        _ = try decode(hint) { index, position in
            let name = JournalPositions.name(header.first + UInt64(index))
            memo.withUnsafeMutableBytes { raw in
                for (at, byte) in name.enumerated() { raw[nameAt + at] = byte }
                for at in 0..<32 { raw[digestAt + at] = position.digest.map { hint[$0.lowerBound + at] } ?? 0 }
                raw.storeBytes(of: position.timeMilliseconds.littleEndian, toByteOffset: timeAt, as: UInt64.self)
            }
            let span = SnapshotFile.ValueSpan(
                offset: offset,
                bodyBytes: UInt32(memoBodyBytes(namespace: header.namespace.count, run: header.run.count,
                                                valueBytes: Int(position.valueBytes))))
            try memo.withUnsafeBytes { try body($0, span) }
            offset += UInt64(span.frameBytes)
        }
    }
}

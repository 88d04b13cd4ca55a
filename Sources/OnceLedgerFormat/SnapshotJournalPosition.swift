/// A journal position as a compaction streams it (`SnapshotFile.StreamItem.journalPosition`):
/// the fields of its memo entry (`Spec/FORMAT.md` §5.16, §10.1: step "", a ten-digit name)
/// without the body's bytes. A large journal compacts with one of these per position — 32
/// bytes in the item array, its run's key and digests shared — instead of an encoded hint
/// per position (~128 bytes with its allocation), and the hint is written from the fields
/// when the snapshot is.
extension SnapshotFile {
    /// The run generation of journal positions, shared by its items: the key's bytes once,
    /// and the input digests of its positions that have one.
    public final class JournalRun: Hashable, Sendable {
        public let namespace: [UInt8]
        public let run: [UInt8]
        public let generation: UInt64
        /// 32 bytes per digest; a position's `digest` is an index + 1 into it.
        public let digests: [UInt8]

        public init(namespace: [UInt8], run: [UInt8], generation: UInt64, digests: [UInt8]) {
            self.namespace = namespace
            self.run = run
            self.generation = generation
            self.digests = digests
        }

        public static func == (a: JournalRun, b: JournalRun) -> Bool {
            a === b || (a.generation == b.generation && a.namespace == b.namespace && a.run == b.run
                && a.digests == b.digests)
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(namespace)
            hasher.combine(run)
            hasher.combine(generation)
        }
    }

    /// One journal position whose value stays on disk: what its memo entry says besides
    /// the value, and the value's length.
    public struct JournalPosition: Hashable, Sendable {
        public var run: JournalRun
        /// The position (its name is its ten digits); below 2^32.
        public var position: UInt32
        /// The value's length (the memo entry's last field).
        public var valueBytes: UInt32
        public var timeMilliseconds: UInt64
        /// Index + 1 of its input digest in `run.digests` (32-byte units); 0: no input
        /// (32 zero bytes in the body).
        public var digest: UInt32

        public init(run: JournalRun, position: UInt32, valueBytes: UInt32, timeMilliseconds: UInt64, digest: UInt32) {
            self.run = run
            self.position = position
            self.valueBytes = valueBytes
            self.timeMilliseconds = timeMilliseconds
            self.digest = digest
        }

        /// Calls `body` with its input digest's 32 bytes: its own in `run.digests`, or zeros
        /// for none (or an index `run.digests` does not hold).
        public func withDigest<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
            let start = (Int(digest) &- 1) &* 32
            if digest != 0, start >= 0, start + 32 <= run.digests.count {
                return try run.digests.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<(start + 32)])) }
            }
            return try withUnsafeTemporaryAllocation(byteCount: 32, alignment: 8) { zeros in
                zeros.initializeMemory(as: UInt8.self, repeating: 0)
                return try body(UnsafeRawBufferPointer(zeros))
            }
        }

        /// The length of its memo entry body with an empty value (its hint, §6.7).
        public var hintBytes: Int {
            JournalPositions.memoBodyBytes(namespace: run.namespace.count, run: run.run.count, valueBytes: 0)
        }

        /// Its memo entry body with an empty value: the bytes `RecordBody.memoEntry` encodes
        /// for these fields and `value: []`.
        public var hint: [UInt8] {
            var writer = ByteWriter(capacity: hintBytes)
            writeHint(into: &writer)
            return writer.bytes
        }

        /// Appends `hint` to `writer`: built in a scratch buffer and appended at once (a
        /// compaction writes one per position; an append per field was a tenth of its time).
        public func writeHint(into writer: inout ByteWriter) {
            let count = hintBytes
            withUnsafeTemporaryAllocation(byteCount: count, alignment: 8) { raw in
                // `at` is passed, not captured: a captured var costs a runtime exclusivity
                // check per access (they showed in the compaction's profile).
                func integer<T: FixedWidthInteger>(_ value: T, _ at: inout Int) {
                    raw.storeBytes(of: value.littleEndian, toByteOffset: at, as: T.self)
                    at += MemoryLayout<T>.size
                }
                func bytes(_ source: UnsafeRawBufferPointer, _ at: inout Int) {
                    if let base = source.baseAddress, let target = raw.baseAddress {
                        (target + at).copyMemory(from: base, byteCount: source.count)
                    }
                    at += source.count
                }
                var at = 0
                integer(UInt16(truncatingIfNeeded: run.namespace.count), &at)
                run.namespace.withUnsafeBytes { bytes($0, &at) }
                integer(UInt16(truncatingIfNeeded: run.run.count), &at)
                run.run.withUnsafeBytes { bytes($0, &at) }
                integer(run.generation, &at)
                integer(UInt16(0), &at)
                // The ten-digit name.
                integer(UInt16(JournalPositions.nameBytes), &at)
                var rest = UInt64(position)
                for index in (0..<JournalPositions.nameBytes).reversed() {
                    raw[at + index] = 0x30 + UInt8(rest % 10)
                    rest /= 10
                }
                at += JournalPositions.nameBytes
                withDigest { bytes($0, &at) }
                integer(timeMilliseconds, &at)
                integer(UInt32(0), &at)
                writer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[0..<at]))
            }
        }
    }
}

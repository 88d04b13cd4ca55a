import OnceLedgerFormat
import Synchronization

/// Where a record that holds a value is on disk (Bitcask's keydir entry): a segment
/// record (its frame) or a version 3 snapshot's value (`Spec/FORMAT.md` §6.3).
public struct ValueLocation: Hashable, Sendable {
    /// Marks `file` as a snapshot, named by its covered sequence number in the low bits.
    public static let snapshotBit: UInt64 = 1 << 63

    /// The segment number, or `snapshotBit | covered sequence` for a snapshot.
    public var file: UInt64
    /// The segment offset of the record frame, or the file offset of the snapshot value.
    public var offset: UInt64
    /// The record's body bytes (segment) or the value's body bytes (snapshot).
    public var bodyBytes: UInt32

    public init(file: UInt64, offset: UInt64, bodyBytes: UInt32) {
        self.file = file
        self.offset = offset
        self.bodyBytes = bodyBytes
    }

    public static func segment(_ number: UInt64, offset: UInt64, bodyBytes: UInt32) -> ValueLocation {
        ValueLocation(file: number, offset: offset, bodyBytes: bodyBytes)
    }

    /// Nil when `covered` does not fit beside the snapshot bit (no real ledger gets there).
    public static func snapshot(covered: UInt64, _ span: SnapshotFile.ValueSpan) -> ValueLocation? {
        guard covered < snapshotBit - 1 else { return nil }
        return ValueLocation(file: snapshotBit | covered, offset: span.offset, bodyBytes: span.bodyBytes)
    }

    public var isSnapshot: Bool { file & ValueLocation.snapshotBit != 0 }

    /// The bytes one read fetches: the whole record frame, or the whole snapshot value.
    public var readBytes: Int {
        isSnapshot ? SnapshotFile.ValueSpan(offset: offset, bodyBytes: bodyBytes).frameBytes
            : RecordFrame.frameBytes(bodyBytes: Int(bodyBytes))
    }
}

/// Read-ahead for many reads of records or values, most in increasing offset order: a
/// compaction reads every live value, and a snapshot's values come back in the order the
/// last compaction wrote them, one after the other. Once a read starts where the one before
/// it in the same file ended (give or take `gapBytes`), the bytes from there are read at once
/// and the reads that fall inside them are served from memory: one system call per window
/// instead of one per value. A window starts at 16 KiB and doubles, up to `windowBytes`, while
/// the reads run on from one window into the next, so a few reads that happen to follow one
/// another cost one small read, not a large one. Reads that do not follow (values spread over
/// segments by runs taking turns) each cost one `pread`, as without it. Every read is checked
/// as before; a window that does not hold a record whole is not used for it (a direct read
/// then says what is wrong).
///
/// For one reader at a time (a compaction's values pass); its state is behind a lock.
public final class ReadAhead: Sendable {
    public static let defaultWindowBytes = 1 << 20
    /// The first window of a run of reads that follow one another.
    public static let firstWindowBytes = 16 << 10
    /// How far past the end of the last read the next may start and still follow it (a
    /// segment record's or snapshot value's padding is less).
    static let gapBytes: UInt64 = 64

    private struct State {
        /// The file of the last read, and where it ended.
        var file: UInt64?
        var lastEnd: UInt64 = 0
        /// The file the window was read from, and where.
        var windowFile: UInt64?
        var windowStart: UInt64 = 0
        var window: [UInt8] = []
        /// The last read was served from the window (so a read past it streams on).
        var lastFromWindow = false
        /// The next window's size.
        var nextWindowBytes = 0
        /// Reads served from a window, and windows read (for tests).
        var hits = 0
        var windows = 0
    }

    private let windowBytes: Int
    private let state = Mutex(State())

    public init(windowBytes: Int = ReadAhead.defaultWindowBytes) {
        self.windowBytes = max(1, windowBytes)
    }

    /// (reads served from a window, windows read), for tests.
    public var counts: (hits: Int, windows: Int) { state.withLock { ($0.hits, $0.windows) } }

    /// The bytes of `location` (its `readBytes`, fewer at the end of the file) if a window
    /// holds them or they follow the last read; nil: read them directly.
    func bytes(_ location: ValueLocation, from file: any StorageFile) -> [UInt8]? {
        state.withLock { state in
            let count = UInt64(location.readBytes)
            let end = location.offset &+ count
            guard end >= location.offset else { return nil }
            defer {
                state.file = location.file
                state.lastEnd = end
            }
            func fromWindow() -> [UInt8]? {
                guard state.windowFile == location.file, location.offset >= state.windowStart,
                      end <= state.windowStart + UInt64(state.window.count) else { return nil }
                state.hits += 1
                state.lastFromWindow = true
                let start = Int(location.offset - state.windowStart)
                return Array(state.window[start..<(start + Int(count))])
            }
            if let bytes = fromWindow() { return bytes }
            let streaming = state.lastFromWindow
            state.lastFromWindow = false
            guard state.file == location.file, location.offset >= state.lastEnd,
                  location.offset - state.lastEnd <= ReadAhead.gapBytes else { return nil }
            // It follows the last read: read a window from here, larger while the reads run
            // on from the last window (a failed or short one is not used; the direct read
            // reports what is wrong).
            state.nextWindowBytes = streaming ? min(windowBytes, state.nextWindowBytes * 2)
                : min(windowBytes, ReadAhead.firstWindowBytes)
            guard let window = try? file.read(at: location.offset, count: max(Int(count), state.nextWindowBytes)) else { return nil }
            state.window = window
            state.windowFile = location.file
            state.windowStart = location.offset
            state.windows += 1
            return fromWindow()
        }
    }
}

/// Reads records back from where the log put them: one `pread` per record, its
/// checksum checked, through file descriptors it keeps open.
///
/// A handle is a reference (`any StorageFile`, closed when the last reference goes): a
/// reader that took a handle (`handle(for:)`) before a compaction removed the file keeps
/// reading the old, unlinked file. The engine `pin`s every file before it unlinks it,
/// and `retire`s it after the state that pointed there was moved on; a file never
/// pinned is opened on first use.
public final class RecordReader: Sendable {
    public let storage: any Storage
    public let directory: String
    public let ledgerID: LedgerID
    private let files = Mutex<[UInt64: any StorageFile]>([:])

    public init(storage: any Storage, directory: String, ledgerID: LedgerID) {
        self.storage = storage
        self.directory = directory
        self.ledgerID = ledgerID
    }

    /// The path of `file` (a `ValueLocation.file`).
    public func path(of file: UInt64) -> String {
        file & ValueLocation.snapshotBit != 0
            ? Paths.join(directory, LedgerFileNames.snapshot(file & ~ValueLocation.snapshotBit))
            : Paths.join(directory, LedgerFileNames.segment(file))
    }

    /// The open handle of `file`, opening it (read-only) on first use.
    public func handle(for file: UInt64) throws -> any StorageFile {
        if let open = files.withLock({ $0[file] }) { return open }
        let opened = try storage.openFile(path(of: file), mode: .readOnly)
        return files.withLock { files in
            if let raced = files[file] { return raced }
            files[file] = opened
            return opened
        }
    }

    /// Opens `file` now if it is not open, so readers keep reading it after it is unlinked;
    /// throws if it cannot be opened (then it must not be unlinked yet).
    public func pin(_ file: UInt64) throws {
        _ = try handle(for: file)
    }

    /// Forgets `file`'s handle: closed once no reader holds it.
    public func retire(_ file: UInt64) {
        _ = files.withLock { $0.removeValue(forKey: file) }
    }

    /// Forgets every handle (the log closed): each closes once no reader holds it; a later
    /// read opens its file again.
    public func retireAll() {
        files.withLock { $0.removeAll() }
    }

    /// The files with an open handle (for tests).
    public var openFiles: [UInt64] { files.withLock { $0.keys.sorted() } }

    /// Reads the record at `location` and returns its kind and body, checked: the frame's
    /// checksum (a segment record) or the value's (a snapshot). Throws a typed error,
    /// never traps, when the bytes on disk no longer hold that record.
    public func read(_ location: ValueLocation) throws -> (kind: RecordKind, body: [UInt8]) {
        try read(location, from: handle(for: location.file))
    }

    /// `read`, through a handle taken earlier (`handle(for:)`).
    public func read(_ location: ValueLocation, from file: any StorageFile) throws -> (kind: RecordKind, body: [UInt8]) {
        try withRecord(location, from: file) { kind, body in (kind, Array(body)) }
    }

    /// Reads and checks the record at `location` like `read`, and calls `body` with its kind
    /// and body bytes in place (valid only during the call), without copying the body.
    public func withRecord<T>(_ location: ValueLocation, from file: any StorageFile,
                              _ body: (RecordKind, UnsafeRawBufferPointer) throws -> T) throws -> T {
        let bytes = try file.read(at: location.offset, count: location.readBytes)
        return try checked(bytes, location, file: file, body)
    }

    /// Reads and checks the record at `location` like `withRecord`, and returns the part of
    /// its body that `part` names (a value), moved to the front of the buffer the read filled:
    /// one allocation and no second copy, for values read often (the memo's hits).
    /// `readAhead`: reads of many values in file order (a compaction's), served from one
    /// larger read while they follow one another on disk (`ReadAhead`).
    public func readPart(_ location: ValueLocation, from file: any StorageFile, readAhead: ReadAhead? = nil,
                         _ part: (RecordKind, UnsafeRawBufferPointer) throws -> Range<Int>) throws -> [UInt8] {
        var bytes = try readAhead?.bytes(location, from: file) ?? file.read(at: location.offset, count: location.readBytes)
        let range = try checked(bytes, location, file: file) { kind, body -> Range<Int> in
            let range = try part(kind, body)
            let bodyStart = bytes.withUnsafeBytes { body.baseAddress.unsafelyUnwrapped - $0.baseAddress.unsafelyUnwrapped }
            return (bodyStart + range.lowerBound)..<(bodyStart + range.upperBound)
        }
        bytes.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress, !range.isEmpty else { return }
            (base).copyMemory(from: base + range.lowerBound, byteCount: range.count)
        }
        bytes.removeLast(bytes.count - range.count)
        return bytes
    }

    /// Reads the segment records at `locations` — in one file, in increasing offset order,
    /// not overlapping — with one `pread` of the span from the first to the end of the last,
    /// and checks each in that buffer as `readPart` does (its frame, checksum and length):
    /// a record the span does not hold whole, or that no longer checks, throws
    /// `.corruptRecord`, never returns other bytes. Returns the part `part` names of each
    /// (called with the record's index in `locations`), copied out. Adjacent records (a
    /// run's journal, written in order) cost one system call instead of one each.
    public func readParts(_ locations: [ValueLocation], from file: any StorageFile,
                          _ part: (Int, RecordKind, UnsafeRawBufferPointer) throws -> Range<Int>) throws -> [[UInt8]] {
        guard let first = locations.first else { return [] }
        var end = first.offset
        for (index, location) in locations.enumerated() {
            guard !location.isSnapshot, location.file == first.file, location.offset >= end else {
                throw LedgerError(.invalidArgument,
                                  "readParts takes segment records of one file in increasing offset order (record \(index) is not)")
            }
            end = location.offset + UInt64(location.readBytes)
        }
        let bytes = try file.read(at: first.offset, count: Int(end - first.offset))
        return try bytes.withUnsafeBytes { raw in
            var parts: [[UInt8]] = []
            parts.reserveCapacity(locations.count)
            for (index, location) in locations.enumerated() {
                let start = min(raw.count, Int(location.offset - first.offset))
                let stop = min(raw.count, start + location.readBytes)
                let record = UnsafeRawBufferPointer(rebasing: raw[start..<stop])
                parts.append(try checked(record, location, file: file) { kind, body in
                    let range = try part(index, kind, body)
                    return Array(UnsafeRawBufferPointer(rebasing: body[range]))
                })
            }
            return parts
        }
    }

    private func checked<T>(_ bytes: [UInt8], _ location: ValueLocation, file: any StorageFile,
                            _ body: (RecordKind, UnsafeRawBufferPointer) throws -> T) throws -> T {
        try bytes.withUnsafeBytes { try checked($0, location, file: file, body) }
    }

    private func checked<T>(_ raw: UnsafeRawBufferPointer, _ location: ValueLocation, file: any StorageFile,
                            _ body: (RecordKind, UnsafeRawBufferPointer) throws -> T) throws -> T {
        let count = location.readBytes
        func damaged(_ reason: String) -> LedgerError {
            LedgerError(.corruptRecord,
                        "the record at offset \(location.offset) changed on disk since the ledger opened (\(reason)); run `onceledger verify` and `onceledger salvage`",
                        path: file.path, segment: location.isSnapshot ? nil : location.file, offset: location.offset)
        }
        do {
            if location.isSnapshot {
                let span = SnapshotFile.ValueSpan(offset: location.offset, bodyBytes: location.bodyBytes)
                switch SnapshotFile.decodeValue(raw, span: span) {
                case .corrupt(let reason): throw damaged(reason)
                case .value(let kind, let range): return try body(kind, UnsafeRawBufferPointer(rebasing: raw[range]))
                }
            }
            guard raw.count == count else { throw damaged("only \(raw.count) of \(count) bytes are there") }
            switch RecordFrame.decode(raw, at: 0, end: count, baseOffset: location.offset, ledgerID: ledgerID,
                                      segment: location.file) {
            case .record(let header, let bodyStart) where header.bodyBytes == location.bodyBytes:
                return try body(header.kind,
                                UnsafeRawBufferPointer(rebasing: raw[bodyStart..<(bodyStart + Int(header.bodyBytes))]))
            case .record(let header, _):
                throw damaged("its body is \(header.bodyBytes) bytes, not \(location.bodyBytes)")
            case .corrupt(let reason): throw damaged("\(reason)")
            case .zero: throw damaged("the bytes are zero")
            case .incomplete: throw damaged("the frame is incomplete")
            }
        }
    }
}

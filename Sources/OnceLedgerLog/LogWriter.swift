import OnceLedgerFormat

/// The synchronous core of the engine: owns the active segment and appends commit
/// batches durably. Not thread-safe: `LogEngine` drives it from its one I/O
/// thread; deterministic tests drive it directly.
///
/// Durability (`Spec/FORMAT.md` §7): a batch is one `pwrite` and one `fdatasync`
/// (one `writeAndSynchronizeData`, a single `pwritev2(RWF_DSYNC)` on `PosixStorage`);
/// a new segment is written, zero-filled, `fsync`ed under a temporary name,
/// renamed and the directory `fsync`ed before any record goes into it. A failure of
/// any write or sync poisons the writer: it never retries an fsync.
public final class LogWriter {
    public let storage: any Storage
    public let directory: String
    public let configuration: LogConfiguration
    public let ledgerID: LedgerID

    public private(set) var lastSequence: UInt64
    public private(set) var lastChain: UInt32
    /// Highest sequence number known durable (written and fdatasync'd).
    public private(set) var durableSequence: UInt64
    public private(set) var poisoned: LedgerError?
    public private(set) var segmentNumber: UInt64
    public private(set) var writeOffset: UInt64
    /// (segment number, first sequence number) of every live segment, in order.
    public private(set) var segments: [(number: UInt64, firstSequence: UInt64)]
    public private(set) var snapshotCovered: UInt64?

    private var segmentFile: (any StorageFile)?
    /// Whether a non-checkpoint record was committed since open (close writes a checkpoint then).
    private var committedSinceOpen = false
    private var segmentBytes: UInt64

    static let zeroChunkBytes = 1 << 20

    /// Opens a writer after a successful scan (rows R4, R11, R15). Performs the
    /// torn-tail quarantine of row R15 before anything can be appended.
    public init(storage: any Storage, directory: String, configuration: LogConfiguration, report: RecoveryReport) throws {
        try configuration.validate()
        self.storage = storage
        self.directory = directory
        self.configuration = configuration
        switch report.row.action {
        case .refuse:
            throw report.error ?? LedgerError(.corruptRecord, report.row.summary, path: directory)
        case .createNew:
            self.ledgerID = LedgerID.random()
            self.lastSequence = 0
            self.lastChain = 0
            self.durableSequence = 0
            self.segmentNumber = 0
            self.writeOffset = 0
            self.segmentBytes = 0
            self.segments = []
            self.snapshotCovered = nil
            try rollover(size: LogWriter.firstSegmentBytes(configuration))
        case .open, .quarantineTornTail:
            guard let ledgerID = report.ledgerID, let last = report.segments.last, let header = last.header else {
                throw LedgerError(.corruptSegmentHeader, "scan report has no usable segment", path: directory)
            }
            self.ledgerID = ledgerID
            self.lastSequence = report.lastSequence
            self.lastChain = report.lastChain
            self.durableSequence = report.lastSequence
            self.segmentNumber = last.number
            self.writeOffset = last.endOffset
            self.segmentBytes = header.segmentBytes
            self.segments = report.segments.compactMap { summary in
                summary.header.map { (summary.number, $0.firstSequence) }
            }
            self.snapshotCovered = report.snapshot?.coveredSequence
            let file = try storage.openFile(last.path, mode: .readWrite)
            self.segmentFile = file
            // The scan read the page cache: a killed process may have left records it
            // wrote but never synced. Make them durable before `durableSequence` vouches
            // for them (acked-through) or a rollover seals this segment.
            try file.synchronizeData()
            if report.row.action == .quarantineTornTail, let torn = report.tornTail {
                try quarantine(torn, file: file)
            }
        }
    }

    deinit { segmentFile?.close() }

    /// The whole open sequence, synchronously (used by `LogEngine.open` and by
    /// deterministic tests): lock the directory, scan it, decide per
    /// `Spec/RECOVERY.md`, delete leftover temporary files (durably), quarantine a
    /// torn tail, and return a writer positioned after the last valid record.
    /// On any error the lock is released. The caller owns the returned lock.
    public static func recover(
        directory: String, storage: any Storage, configuration: LogConfiguration, createIfMissing: Bool = true,
        onSnapshot: (SnapshotFile) throws -> Void = { _ in },
        onRecord: (ScannedRecord) throws -> Void = { _ in }
    ) throws -> (LogWriter, any StorageLock, RecoveryReport) {
        try configuration.validate()
        if createIfMissing {
            try storage.createDirectory(directory)
            try refuseForeignDirectory(directory, storage: storage, configuration: configuration)
        } else if !storage.exists(directory) {
            throw LedgerError(.notALedger, "no ledger directory here; create one first", path: directory)
        } else if !(try storage.listDirectory(directory)).contains(where: {
            LedgerFileNames.parseSegment($0) != nil || LedgerFileNames.parseSnapshot($0) != nil
        }) {
            // Checked before locking so a refused open leaves no LOCK file behind.
            throw LedgerError(.notALedger, "the directory holds no ledger (no segment, no snapshot)", path: directory)
        }
        let lock = try storage.lockDirectory(directory)
        do {
            let report = try RecoveryScanner.scan(
                storage: storage, directory: directory, onSnapshot: onSnapshot, onRecord: onRecord)
            if report.row.action == .createNew && !createIfMissing {
                throw LedgerError(.notALedger, "the directory holds no ledger (no segment, no snapshot)", path: directory)
            }
            if let error = report.error { throw error }
            // Leftover temporary files are creations that never completed.
            for name in report.temporaryFiles { try storage.removeFile(Paths.join(directory, name)) }
            // Always sync the directory: a previous process may have been killed after a
            // rename or unlink but before its directory fsync (the page cache outlives the
            // process). Nothing may be appended on top of entries a power loss could revert.
            try storage.synchronizeDirectory(directory)
            let writer = try LogWriter(storage: storage, directory: directory, configuration: configuration, report: report)
            return (writer, lock, report)
        } catch {
            lock.unlock()
            throw error
        }
    }

    /// A writer creates a ledger only in an empty directory (or one holding nothing but
    /// the ledger's own leftovers: `LOCK`, temporary and torn files, `lost+found`), unless
    /// `adoptNonEmptyDirectory` is set: the read-only tools call any other directory "not
    /// a ledger", and a ledger must not be created among unrelated files by a mistyped
    /// path. Checked before locking, so a refusal leaves no `LOCK` behind.
    static func refuseForeignDirectory(_ directory: String, storage: any Storage, configuration: LogConfiguration) throws {
        guard !configuration.adoptNonEmptyDirectory else { return }
        let names = try storage.listDirectory(directory)
        guard !names.contains(where: { LedgerFileNames.parseSegment($0) != nil || LedgerFileNames.parseSnapshot($0) != nil })
        else { return }
        let foreign = names.filter {
            $0 != LedgerFileNames.lock && $0 != "lost+found" && !LedgerFileNames.isTemporary($0) && !LedgerFileNames.isTorn($0)
        }.sorted()
        guard let first = foreign.first else { return }
        let more = foreign.count > 1 ? " and \(foreign.count - 1) more" : ""
        throw LedgerError(
            .notALedger,
            "the directory is not empty (\(first)\(more)) and holds no ledger; pass an empty or new directory, or set LogConfiguration.adoptNonEmptyDirectory (`onceledger stress --adopt-directory`) to create a ledger among these files",
            path: directory)
    }

    /// Path of the side file the torn tail of `torn` goes to.
    public static func tornSidePath(directory: String, torn: TornTail, storage: any Storage) -> String {
        let base = LedgerFileNames.torn(segment: torn.segment, offset: torn.offset)
        var path = Paths.join(directory, base)
        var suffix = 1
        while storage.exists(path) {
            path = Paths.join(directory, base.replacingSuffix(".bin", with: "-\(suffix).bin"))
            suffix += 1
        }
        return path
    }

    /// Row R15: copy the torn bytes to a side file (durably), zero them in the
    /// segment, and make that durable, so nothing appended later can hide behind them.
    private func quarantine(_ torn: TornTail, file: any StorageFile) throws {
        precondition(torn.offset == writeOffset, "torn tail starts where the valid records end")
        let count = Int(torn.endOffset - torn.offset)
        let bytes = try file.read(at: torn.offset, count: count)
        let sidePath = LogWriter.tornSidePath(directory: directory, torn: torn, storage: storage)
        try writeFileDurably(path: sidePath, bytes: bytes)
        var zeroed = torn.offset
        while zeroed < torn.endOffset {
            let chunk = Int(min(UInt64(LogWriter.zeroChunkBytes), torn.endOffset - zeroed))
            try file.write([UInt8](repeating: 0, count: chunk), at: zeroed)
            zeroed += UInt64(chunk)
        }
        try file.synchronizeData()
    }

    /// Creates `path` with `bytes` via a temporary name: write, fsync, rename,
    /// directory fsync. A crash leaves either nothing or the whole file.
    func writeFileDurably(path: String, bytes: [UInt8]) throws {
        let temporary = path + LedgerFileNames.temporarySuffix
        if storage.exists(temporary) { try storage.removeFile(temporary) }
        let file = try storage.openFile(temporary, mode: .createExclusive)
        defer { file.close() }
        do {
            try file.write(bytes, at: 0)
            try file.synchronize()
            try storage.rename(temporary, to: path)
        } catch {
            removeTemporary(temporary, file: file)
            throw error
        }
        try storage.synchronizeDirectory(directory)
    }

    /// After a failed creation (ENOSPC, EACCES, EIO before the rename): closes the file
    /// and unlinks its temporary name at once, best effort, with a directory fsync, so a
    /// full disk is not left fuller until the next open (`Spec/FORMAT.md` §2.3). The
    /// failure itself is still thrown, and still poisons the writer.
    private func removeTemporary(_ temporary: String, file: any StorageFile) {
        file.close()
        guard (try? storage.removeFile(temporary)) != nil else { return }
        try? storage.synchronizeDirectory(directory)
    }

    private func poison(_ error: Error) -> LedgerError {
        let typed = (error as? LedgerError) ?? LedgerError(.io, "\(error)", path: directory)
        if poisoned == nil {
            var stored = typed
            stored.message = "an earlier write or sync failed (\(typed.message)); reopen the ledger to recover"
            stored.code = .poisoned
            poisoned = stored
        }
        return typed
    }

    private func checkUsable() throws {
        if let poisoned { throw poisoned }
        guard segmentFile != nil else { throw LedgerError(.closed, "the log is closed", path: directory) }
    }

    /// Size of the first segment of a ledger, and of the segment a compaction rolls to
    /// (`Spec/FORMAT.md` §3.4): the configured first size, at most `segmentBytes`.
    static func firstSegmentBytes(_ configuration: LogConfiguration) -> UInt64 {
        min(configuration.initialSegmentBytes, configuration.segmentBytes)
    }

    /// Size of the segment after one of `current` bytes (`Spec/FORMAT.md` §3.4):
    /// double, up to the configured `segmentBytes`, and at least room for the header
    /// and a frame of `frameBytes` (rounded up to 4 KiB), so the record that caused
    /// the rollover fits whatever its size.
    static func nextSegmentBytes(after current: UInt64, frameBytes: UInt64, _ configuration: LogConfiguration) -> UInt64 {
        let maximum = configuration.segmentBytes
        let doubled = current > maximum / 2 ? maximum : max(current * 2, firstSegmentBytes(configuration))
        let page = UInt64(4096)
        let needed = UInt64(FormatLimits.segmentHeaderBytes) + frameBytes
        let room = needed > maximum - page ? maximum : (needed + page - 1) / page * page
        return min(maximum, max(doubled, room))
    }

    /// Starts segment `segmentNumber + 1` of `size` bytes (written and synced under a
    /// temporary name, renamed, directory synced) and makes it the active segment.
    private func rollover(size: UInt64) throws {
        // A crafted segment header may carry any number; never overflow on it.
        guard segmentNumber < UInt64.max else {
            throw LedgerError(.limitExceeded, "segment numbers are exhausted (segment \(segmentNumber))",
                              path: directory, segment: segmentNumber, limit: "segmentNumber")
        }
        let number = segmentNumber + 1
        let header = SegmentHeader(
            ledgerID: ledgerID, segmentNumber: number, firstSequence: lastSequence + 1,
            segmentBytes: size, previousChain: lastChain)
        let path = Paths.join(directory, LedgerFileNames.segment(number))
        let temporary = path + LedgerFileNames.temporarySuffix
        if storage.exists(temporary) { try storage.removeFile(temporary) }
        let file = try storage.openFile(temporary, mode: .createExclusive)
        let active: any StorageFile
        var renamed = false
        do {
            let firstChunk = Int(min(UInt64(LogWriter.zeroChunkBytes), size))
            var first = [UInt8](repeating: 0, count: firstChunk)
            first.replaceSubrange(0..<FormatLimits.segmentHeaderBytes, with: header.encode())
            try file.write(first, at: 0)
            var written = UInt64(firstChunk)
            let zeros = [UInt8](repeating: 0, count: LogWriter.zeroChunkBytes)
            while written < size {
                let chunk = Int(min(UInt64(zeros.count), size - written))
                try file.write(chunk == zeros.count ? zeros : Array(zeros[0..<chunk]), at: written)
                written += UInt64(chunk)
            }
            try file.synchronize()
            try storage.rename(temporary, to: path)
            renamed = true
            try storage.synchronizeDirectory(directory)
            // `file` was opened under the temporary name, which no longer exists;
            // reopen under the segment's own name so later errors name a real file.
            active = try storage.openFile(path, mode: .readWrite)
        } catch {
            if renamed { file.close() } else { removeTemporary(temporary, file: file) }
            throw error
        }
        file.close()
        segmentFile?.close()
        segmentFile = active
        segmentNumber = number
        segmentBytes = size
        writeOffset = UInt64(FormatLimits.segmentHeaderBytes)
        segments.append((number, header.firstSequence))
    }

    /// Checks one append group against the configured limits without writing.
    public func validate(_ records: [LogRecord]) throws {
        guard !records.isEmpty else { throw LedgerError(.invalidArgument, "append needs at least one record") }
        guard records.count <= configuration.appendRecordsMax else {
            throw LedgerError(.limitExceeded, "\(records.count) records in one append; the limit is \(configuration.appendRecordsMax)",
                              limit: "appendRecordsMax")
        }
        for record in records where record.body.count > Int(configuration.recordBodyBytesMax) {
            throw LedgerError(.limitExceeded,
                              "record body is \(record.body.count) bytes; the limit is \(configuration.recordBodyBytesMax)",
                              limit: "recordBodyBytesMax")
        }
        for record in records where record.kind.rawValue == 0 {
            throw LedgerError(.invalidArgument, "record kind 0 is reserved")
        }
    }

    /// Appends one commit batch and makes it durable. Returns the first sequence
    /// number; the records get consecutive numbers. Callers validate first.
    @discardableResult
    public func commit(_ records: [LogRecord]) throws -> UInt64 {
        try checkUsable()
        // Sequence UInt64.max is never written (the scanner rejects it), so a ledger
        // opened from a crafted snapshot near the top cannot overflow here.
        guard UInt64(records.count) < UInt64.max - lastSequence else {
            throw LedgerError(.limitExceeded, "sequence numbers are exhausted (last \(lastSequence))",
                              path: directory, sequence: lastSequence, limit: "sequence")
        }
        let first = lastSequence + 1
        do {
            var buffer: [UInt8] = []
            var bufferStart = writeOffset
            for (index, record) in records.enumerated() {
                let frame = UInt64(RecordFrame.frameBytes(bodyBytes: record.body.count))
                if writeOffset + frame > segmentBytes {
                    try flush(&buffer, at: bufferStart)
                    try rollover(size: LogWriter.nextSegmentBytes(after: segmentBytes, frameBytes: frame, configuration))
                    bufferStart = writeOffset
                }
                let position = RecordPosition(ledgerID: ledgerID, segment: segmentNumber, offset: writeOffset)
                let checksum = RecordFrame.encode(
                    into: &buffer, sequence: lastSequence + 1, ackedThrough: durableSequence, previousChain: lastChain,
                    kind: record.kind, flags: index == records.count - 1 ? RecordHeader.flagBatchEnd : 0,
                    body: record.body, position: position)
                lastSequence += 1
                lastChain = checksum
                writeOffset += frame
            }
            try flush(&buffer, at: bufferStart)
        } catch {
            throw poison(error)
        }
        committedSinceOpen = records.contains { $0.kind != .checkpoint }
        return first
    }

    private func flush(_ buffer: inout [UInt8], at offset: UInt64) throws {
        guard !buffer.isEmpty, let file = segmentFile else { return }
        try file.writeAndSynchronizeData(buffer, at: offset)
        durableSequence = lastSequence
        buffer.removeAll(keepingCapacity: true)
    }

    public struct CompactionResult: Sendable, Hashable {
        public var coveredSequence: UInt64
        public var snapshotPath: String
        public var snapshotBytes: UInt64
        public var deletedSegments: [UInt64]
        public var deletedSnapshots: [String]
    }

    /// Writes a snapshot of `items` covering everything through `lastSequence`,
    /// then deletes the segments and older snapshots it covers (`Spec/FORMAT.md` §8).
    /// Each step is durable before the next, so a crash at any point loses nothing.
    public func compact(items: [SnapshotFile.Item], timeMilliseconds: UInt64) throws -> CompactionResult {
        try checkUsable()
        for item in items where item.body.count > Int(FormatLimits.recordBodyBytesMax) {
            throw LedgerError(.limitExceeded, "snapshot item of \(item.body.count) bytes", limit: "recordBodyBytesMax")
        }
        var snapshot = SnapshotFile(ledgerID: ledgerID, coveredSequence: lastSequence, chain: lastChain, items: items)
        var bytes = snapshot.encode()
        var deletedSegments: [UInt64] = []
        var deletedSnapshots: [String] = []
        do {
            // The disk-use rule (§8): start a new, small active segment first when that
            // leaves less on disk than keeping the current one, so every old segment
            // is covered and deleted below.
            if let size = try compactionRolloverBytes(snapshotBytes: UInt64(bytes.count)) {
                try rollover(size: size)
                if lastSequence != snapshot.coveredSequence {
                    snapshot = SnapshotFile(ledgerID: ledgerID, coveredSequence: lastSequence, chain: lastChain, items: items)
                    bytes = snapshot.encode()
                }
            }
        } catch {
            throw poison(error)
        }
        let covered = lastSequence
        let path = Paths.join(directory, LedgerFileNames.snapshot(covered))
        do {
            // An existing snapshot of the same covered sequence (its marker was lost in a
            // crash) is replaced by the atomic rename; removing it first could leave no
            // snapshot at all if the removal reached the disk and the rename did not.
            try writeFileDurably(path: path, bytes: bytes)
            snapshotCovered = covered
            // Segments whose every record is covered, never the active one.
            // Oldest first, each removal made durable before the next: unsynced removals
            // may reach the disk in any order, and a surviving older segment with a lost
            // newer one would be a gap (row R5) on the next open.
            while segments.count >= 2, segments[1].firstSequence - 1 <= covered {
                let number = segments[0].number
                try storage.removeFile(Paths.join(directory, LedgerFileNames.segment(number)))
                try storage.synchronizeDirectory(directory)
                deletedSegments.append(number)
                segments.removeFirst()
            }
            for name in try storage.listDirectory(directory) {
                if let other = LedgerFileNames.parseSnapshot(name), other < covered {
                    try storage.removeFile(Paths.join(directory, name))
                    deletedSnapshots.append(name)
                }
            }
            if !deletedSnapshots.isEmpty {
                try storage.synchronizeDirectory(directory)
            }
        } catch {
            throw poison(error)
        }
        let marker = RecordBody.snapshotMarker(.init(
            coveredSequence: covered, timeMilliseconds: timeMilliseconds, snapshotBytes: UInt64(bytes.count)))
        try commit([LogRecord(marker)])
        return CompactionResult(
            coveredSequence: covered, snapshotPath: path, snapshotBytes: UInt64(bytes.count),
            deletedSegments: deletedSegments, deletedSnapshots: deletedSnapshots)
    }

    /// The size of the segment a compaction should roll to before writing a snapshot of
    /// `snapshotBytes`, or nil to keep the active segment (`Spec/FORMAT.md` §8). Rolling
    /// lets the active segment be deleted with the others; the new one gets the first
    /// segment size, or less, down to 4 KiB (room for the header and the marker), if the
    /// directory would otherwise hold more than before the compaction (live segments and
    /// snapshots). It rolls only when the new segment is smaller than the active one.
    private func compactionRolloverBytes(snapshotBytes: UInt64) throws -> UInt64? {
        var before = segmentBytes
        for segment in segments.dropLast() {
            before += fileBytes(Paths.join(directory, LedgerFileNames.segment(segment.number)))
        }
        for name in try storage.listDirectory(directory) where LedgerFileNames.parseSnapshot(name) != nil {
            before += fileBytes(Paths.join(directory, name))
        }
        let page = UInt64(4096)
        let budget = before > snapshotBytes ? (before - snapshotBytes) / page * page : 0
        // The format's smallest segment (4 KiB) has room for the header and the marker.
        let size = max(FormatLimits.segmentBytesMin, min(LogWriter.firstSegmentBytes(configuration), budget))
        return size < segmentBytes ? size : nil
    }

    /// A file's size, or 0 when it cannot be read (which only makes the estimate of
    /// what a compaction frees smaller).
    private func fileBytes(_ path: String) -> UInt64 {
        guard let file = try? storage.openFile(path, mode: .readOnly) else { return 0 }
        defer { file.close() }
        return (try? file.size()) ?? 0
    }

    /// Closes the active segment (after a checkpoint record, if configured and usable).
    public func close(timeMilliseconds: UInt64) {
        if poisoned == nil, segmentFile != nil, configuration.checkpointOnClose, committedSinceOpen {
            _ = try? commit([LogRecord(.checkpoint(timeMilliseconds: timeMilliseconds))])
        }
        segmentFile?.close()
        segmentFile = nil
    }
}

extension String {
    func replacingSuffix(_ suffix: String, with replacement: String) -> String {
        guard hasSuffix(suffix) else { return self + replacement }
        return String(dropLast(suffix.count)) + replacement
    }
}

import OnceLedgerFormat

/// The synchronous core of the engine: owns the active segment and appends commit
/// batches durably. Not thread-safe: `LogEngine` drives it from its one I/O
/// thread; deterministic tests drive it directly.
///
/// Durability (`Spec/FORMAT.md` §7): a batch is one `pwrite` and one `fdatasync`
/// (one `writeAndSynchronizeData`, a single `pwritev2(RWF_DSYNC)` on `PosixStorage`);
/// a new segment is written, zero-filled, `fsync`ed under a temporary name,
/// renamed and the directory `fsync`ed before any record goes into it; the segment
/// before it ends with a seal record naming it, made durable after the new segment's
/// temporary file and before the rename (§7.4). A failure of any write or sync poisons
/// the writer: it never retries an fsync.
public final class LogWriter {
    public let storage: any Storage
    public let directory: String
    public let configuration: LogConfiguration
    public let ledgerID: LedgerID
    /// How this ledger derives effect tokens (header flag bit 0): ledger-scoped for a
    /// ledger created by this version, copied from the existing headers otherwise.
    public let tokenScope: TokenScope
    /// Milliseconds since the Unix epoch, for the time field of seal records.
    public var clock: () -> UInt64 = { LogEngine.systemMilliseconds() }

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

    /// Indices (into the last `commit`'s records) of the records that a rollover's seal
    /// record directly precedes; usually empty. See `committedSequence(ofRecord:)`.
    public private(set) var sealsInLastCommit: [Int] = []
    /// Where each record of the last `commit` landed, in order (`ValueLocation`).
    public private(set) var locationsInLastCommit: [ValueLocation] = []
    /// Called with a file's `ValueLocation.file` just before a compaction unlinks it, so
    /// readers of values can keep the file open (`RecordReader.pin`); if it throws, the
    /// file is kept (and, for a segment, every later one: the next compaction covers them).
    public var willRemoveFile: (@Sendable (UInt64) throws -> Void)?
    private var lastCommitBase: UInt64 = 0

    private var segmentFile: (any StorageFile)?
    /// Whether a non-checkpoint record was committed since open (close writes a checkpoint then).
    private var committedSinceOpen = false
    private var segmentBytes: UInt64

    static let zeroChunkBytes = 1 << 20

    /// Opens a writer after a successful scan (rows R4, R11, R15, R17). Performs the
    /// torn-tail quarantine of row R15, or completes the rollover of row R17, before
    /// anything can be appended.
    public init(storage: any Storage, directory: String, configuration: LogConfiguration, report: RecoveryReport) throws {
        try configuration.validate()
        self.storage = storage
        self.directory = directory
        self.configuration = configuration
        switch report.row.action {
        case .refuse:
            throw report.error ?? LedgerError(.corruptRecord, report.row.summary, path: directory)
        case .createNew:
            // A random id and ledger-scoped tokens, unless the configuration carries an
            // existing ledger's identity over (salvage; validated above).
            let ledgerID = configuration.newLedgerIdentity?.ledgerID ?? LedgerID.random()
            self.ledgerID = ledgerID
            self.tokenScope = configuration.newLedgerIdentity?.tokenScope ?? .ledger(ledgerID)
            self.lastSequence = 0
            self.lastChain = 0
            self.durableSequence = 0
            self.segmentNumber = 0
            self.writeOffset = 0
            self.segmentBytes = 0
            self.segments = []
            self.snapshotCovered = nil
            try rollover(size: LogWriter.firstSegmentBytes(configuration))
        case .open, .quarantineTornTail, .completeRollover:
            guard let ledgerID = report.ledgerID, let last = report.segments.last, let header = last.header else {
                throw LedgerError(.corruptSegmentHeader, "scan report has no usable segment", path: directory)
            }
            self.ledgerID = ledgerID
            self.tokenScope = report.tokenScope ?? TokenScope(ledgerID: ledgerID, ledgerScopedTokens: header.ledgerScopedTokens)
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
            if report.row.action == .completeRollover, let pending = report.pendingRollover {
                try completeRollover(pending)
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
        readSnapshotValues: Bool = true,
        onSnapshot: (SnapshotFile) throws -> Void = { _ in },
        onRecord: (ScannedRecord) throws -> Void = { _ in }
    ) throws -> (LogWriter, any StorageLock, RecoveryReport) {
        try recover(directory: directory, storage: storage, configuration: configuration, createIfMissing: createIfMissing,
                    readSnapshotValues: readSnapshotValues, onSnapshot: onSnapshot,
                    visit: { record, bytes in try onRecord(record.located(in: bytes)) })
    }

    /// `recover`, handing each record over in place (`RecoveryScanner.scan(onRecordInPlace:)`).
    public static func recover(
        directory: String, storage: any Storage, configuration: LogConfiguration, createIfMissing: Bool = true,
        readSnapshotValues: Bool = true,
        onSnapshot: (SnapshotFile) throws -> Void = { _ in },
        onRecordInPlace: (RecordInPlace) throws -> Void
    ) throws -> (LogWriter, any StorageLock, RecoveryReport) {
        try recover(directory: directory, storage: storage, configuration: configuration, createIfMissing: createIfMissing,
                    readSnapshotValues: readSnapshotValues, onSnapshot: onSnapshot,
                    visit: { record, _ in try onRecordInPlace(record) })
    }

    private static func recover(
        directory: String, storage: any Storage, configuration: LogConfiguration, createIfMissing: Bool,
        readSnapshotValues: Bool, onSnapshot: (SnapshotFile) throws -> Void, visit: RecoveryScanner.RecordVisitor
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
                storage: storage, directory: directory, readSnapshotValues: readSnapshotValues, unsyncedTail: .repair,
                onSnapshot: onSnapshot, visit: visit)
            if report.row.action == .createNew && !createIfMissing {
                throw LedgerError(.notALedger, "the directory holds no ledger (no segment, no snapshot)", path: directory)
            }
            if let error = report.error { throw error }
            // Leftover temporary files are creations that never completed; except the
            // successor of an interrupted rollover (row R17), which the writer completes:
            // a crash after deleting it could leave neither file.
            for name in report.temporaryFiles where name != report.pendingRollover?.temporaryName {
                try storage.removeFile(Paths.join(directory, name))
            }
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
        let foreign = names.filter { LedgerFileNames.kind(of: $0) == .other && $0 != "lost+found" }.sorted()
        guard let first = foreign.first else { return }
        let more = foreign.count > 1 ? " and \(foreign.count - 1) more" : ""
        throw LedgerError(
            .notALedger,
            "the directory is not empty (\(first)\(more)) and holds no ledger; pass an empty or new directory, or set LogConfiguration.adoptNonEmptyDirectory (`onceledger stress --adopt-directory`) to create a ledger among these files",
            path: directory)
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
        LogWriter.removeTemporary(temporary, file: file, storage: storage, directory: directory)
    }

    private static func removeTemporary(_ temporary: String, file: any StorageFile, storage: any Storage,
                                        directory: String) {
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
    /// and a frame of `frameBytes` and the seal every segment keeps room for (rounded
    /// up to 4 KiB), so the record that caused the rollover fits whatever its size.
    static func nextSegmentBytes(after current: UInt64, frameBytes: UInt64, _ configuration: LogConfiguration) -> UInt64 {
        let maximum = configuration.segmentBytes
        let doubled = current > maximum / 2 ? maximum : max(current * 2, firstSegmentBytes(configuration))
        let page = UInt64(4096)
        let needed = UInt64(FormatLimits.segmentHeaderBytes) + frameBytes + UInt64(FormatLimits.sealFrameBytes)
        let room = needed > maximum - page ? maximum : (needed + page - 1) / page * page
        return min(maximum, max(doubled, room))
    }

    /// Starts segment `segmentNumber + 1` of `size` bytes and makes it the active segment
    /// (`Spec/FORMAT.md` §3.4, §7.2, §7.4): its file is written whole and `fsync`ed under a
    /// temporary name, and that name made durable; then the active segment is sealed (a
    /// seal record naming the new segment, written and `fdatasync`ed); then the file is
    /// renamed into place and the directory `fsync`ed. A crash leaves either an unsealed
    /// last segment (the `.tmp` is deleted on open), or a sealed one whose successor
    /// exists as `.tmp` (the open completes the rollover) or under its own name.
    /// Returns whether it wrote a seal record (taking a sequence number).
    @discardableResult
    private func rollover(size: UInt64) throws -> Bool {
        // A crafted segment header may carry any number; never overflow on it.
        guard segmentNumber < UInt64.max else {
            throw LedgerError(.limitExceeded, "segment numbers are exhausted (segment \(segmentNumber))",
                              path: directory, segment: segmentNumber, limit: "segmentNumber")
        }
        let number = segmentNumber + 1
        // The seal of the active segment: none when creating the ledger, or when a segment
        // written by format version 1 has no room left for one (version 2 writers keep it).
        var seal: (frame: [UInt8], checksum: UInt32)?
        if segmentFile != nil, writeOffset + UInt64(FormatLimits.sealFrameBytes) <= segmentBytes {
            guard lastSequence < UInt64.max - 2 else {
                throw LedgerError(.limitExceeded, "sequence numbers are exhausted (last \(lastSequence))",
                                  path: directory, sequence: lastSequence, limit: "sequence")
            }
            var frame: [UInt8] = []
            let body = RecordBody.seal(.init(successor: number, timeMilliseconds: clock())).encode()
            let checksum = RecordFrame.encode(
                into: &frame, sequence: lastSequence + 1, ackedThrough: durableSequence, previousChain: lastChain,
                kind: .seal, flags: RecordHeader.flagBatchEnd, body: body,
                position: RecordPosition(ledgerID: ledgerID, segment: segmentNumber, offset: writeOffset))
            seal = (frame, checksum)
        }
        let header = SegmentHeader(
            ledgerScopedTokens: tokenScope.isLedgerScoped, ledgerID: ledgerID, segmentNumber: number,
            firstSequence: lastSequence + (seal == nil ? 1 : 2), segmentBytes: size,
            previousChain: seal?.checksum ?? lastChain)
        let path = Paths.join(directory, LedgerFileNames.segment(number))
        let temporary = path + LedgerFileNames.temporarySuffix
        if storage.exists(temporary) { try storage.removeFile(temporary) }
        let file = try storage.openFile(temporary, mode: .createExclusive)
        let active: any StorageFile
        // Until the seal is durable the `.tmp` is nobody's: a failure removes it at once
        // (§2.3). After the seal, the seal names it, and the next open completes the
        // rollover from it (row R17), so it stays.
        var keepTemporary = false
        do {
            try writeSegmentContents(file, header: header)
            try file.synchronize()
            if let seal, let sealed = segmentFile {
                // The `.tmp` name is durable before the seal can be: a durable seal whose
                // successor has neither name would read as a deleted segment (row R16).
                try storage.synchronizeDirectory(directory)
                // From here on a failure may have made the seal durable: keep the `.tmp`.
                keepTemporary = true
                try sealed.writeAndSynchronizeData(seal.frame, at: writeOffset)
                lastSequence += 1
                lastChain = seal.checksum
                durableSequence = lastSequence
                writeOffset += UInt64(seal.frame.count)
            }
            // With a seal written, the `.tmp` is its successor now, even if the rename fails.
            keepTemporary = seal != nil
            try storage.rename(temporary, to: path)
            try storage.synchronizeDirectory(directory)
            // `file` was opened under the temporary name, which no longer exists;
            // reopen under the segment's own name so later errors name a real file.
            active = try storage.openFile(path, mode: .readWrite)
        } catch {
            if keepTemporary { file.close() } else { removeTemporary(temporary, file: file) }
            throw error
        }
        file.close()
        activate(active, number: number, header: header)
        return seal != nil
    }

    private func activate(_ active: any StorageFile, number: UInt64, header: SegmentHeader) {
        segmentFile?.close()
        segmentFile = active
        segmentNumber = number
        segmentBytes = header.segmentBytes
        writeOffset = UInt64(FormatLimits.segmentHeaderBytes)
        segments.append((number, header.firstSequence))
    }

    /// Writes a new segment's bytes: the header, then zeros up to its size (in chunks).
    private func writeSegmentContents(_ file: any StorageFile, header: SegmentHeader) throws {
        let size = header.segmentBytes
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
    }

    /// Row R17: the last segment is sealed and its successor exists only as its `.tmp`
    /// file, which was written whole and `fsync`ed before the seal (so it is normally
    /// intact). Check it, rewrite it in place if it is not what the seal promised
    /// (never unlink it: a crash then could leave neither name), rename it into place and
    /// `fsync` the directory (`Spec/RECOVERY.md` §5).
    private func completeRollover(_ pending: PendingRollover) throws {
        guard pending.segment == segmentNumber, pending.successor == segmentNumber &+ 1 else {
            throw LedgerError(.chainBreak, "the interrupted rollover does not follow the last segment",
                              path: directory, segment: pending.successor)
        }
        let number = pending.successor
        let path = Paths.join(directory, LedgerFileNames.segment(number))
        let temporary = Paths.join(directory, pending.temporaryName)
        func expected(_ size: UInt64) -> SegmentHeader {
            SegmentHeader(ledgerScopedTokens: tokenScope.isLedgerScoped, ledgerID: ledgerID, segmentNumber: number,
                          firstSequence: lastSequence + 1, segmentBytes: size, previousChain: lastChain)
        }
        var header = expected(LogWriter.nextSegmentBytes(after: segmentBytes, frameBytes: 0, configuration))
        var intact = false
        if let bytes = try storage.readWholeFile(temporary, maxBytes: FormatLimits.segmentBytesMax),
           case .header(let found) = SegmentHeader.decode(bytes), found == expected(found.segmentBytes),
           UInt64(bytes.count) == found.segmentBytes
        {
            intact = bytes.withUnsafeBytes {
                ZeroScan.lastNonZero($0, from: FormatLimits.segmentHeaderBytes, end: $0.count) == nil
            }
            if intact { header = found }
        }
        if !intact {
            let file = try storage.openFile(temporary, mode: .readWrite)
            defer { file.close() }
            try file.truncate(to: header.segmentBytes)
            try writeSegmentContents(file, header: header)
            try file.synchronize()
        }
        try storage.rename(temporary, to: path)
        try storage.synchronizeDirectory(directory)
        activate(try storage.openFile(path, mode: .readWrite), number: number, header: header)
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
        for record in records where record.kind == .seal {
            // A seal must be the last record of its segment and name the next one (FORMAT §5.15).
            throw LedgerError(.invalidArgument, "seal records (kind 12) are written by the log itself at rollover")
        }
    }

    /// The sequence number the last `commit` gave its record at `index`: the records of
    /// one commit have consecutive numbers, except that where the commit rolled over, the
    /// seal record closing the old segment takes the number between two of them.
    public func committedSequence(ofRecord index: Int) -> UInt64 {
        var sequence = lastCommitBase + UInt64(index)
        for sealed in sealsInLastCommit where sealed <= index { sequence += 1 }
        return sequence
    }

    /// Appends one commit batch and makes it durable. Returns the sequence number of
    /// the first record; the records get consecutive numbers, except across a rollover
    /// (`committedSequence(ofRecord:)`). Callers validate first.
    @discardableResult
    public func commit(_ records: [LogRecord]) throws -> UInt64 {
        try checkUsable()
        // Sequence UInt64.max is never written (the scanner rejects it), so a ledger
        // opened from a crafted snapshot near the top cannot overflow here.
        guard UInt64(records.count) < UInt64.max - lastSequence else {
            throw LedgerError(.limitExceeded, "sequence numbers are exhausted (last \(lastSequence))",
                              path: directory, sequence: lastSequence, limit: "sequence")
        }
        sealsInLastCommit.removeAll(keepingCapacity: true)
        locationsInLastCommit.removeAll(keepingCapacity: true)
        lastCommitBase = lastSequence + 1
        do {
            var buffer: [UInt8] = []
            var bufferStart = writeOffset
            for (index, record) in records.enumerated() {
                let frame = UInt64(RecordFrame.frameBytes(bodyBytes: record.body.count))
                // Every segment keeps room for its seal (FORMAT §7.4).
                if writeOffset + frame + UInt64(FormatLimits.sealFrameBytes) > segmentBytes {
                    try flush(&buffer, at: bufferStart)
                    if try rollover(size: LogWriter.nextSegmentBytes(after: segmentBytes, frameBytes: frame, configuration)) {
                        sealsInLastCommit.append(index)
                    }
                    bufferStart = writeOffset
                }
                // A rollover's seal takes a sequence number the guard above did not count.
                guard lastSequence < UInt64.max - 1 else {
                    throw LedgerError(.limitExceeded, "sequence numbers are exhausted (last \(lastSequence))",
                                      path: directory, sequence: lastSequence, limit: "sequence")
                }
                let position = RecordPosition(ledgerID: ledgerID, segment: segmentNumber, offset: writeOffset)
                locationsInLastCommit.append(
                    .segment(segmentNumber, offset: writeOffset, bodyBytes: UInt32(record.body.count)))
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
        return committedSequence(ofRecord: 0)
    }

    private func flush(_ buffer: inout [UInt8], at offset: UInt64) throws {
        guard !buffer.isEmpty, let file = segmentFile else { return }
        try file.writeAndSynchronizeData(buffer, at: offset)
        durableSequence = lastSequence
        buffer.removeAll(keepingCapacity: true)
    }

    /// What a compaction writes: the items, in snapshot order, and how to read the
    /// receipt of each `.receiptLater` item (by its index in `items`) while the snapshot
    /// is written — outside whatever lock guarded the state the items were taken from.
    /// The receipt is returned checked (its record's or value's checksum).
    ///
    /// `later`, if given, are items that follow `items` in the snapshot but are made only
    /// where the snapshot is written (`writeSnapshot`, on the compaction's thread), from a
    /// copy of the state taken with the rest: the writer's thread then only needs a bound
    /// of their size (for the rollover rule). `later`'s own reader is given indices into
    /// its items.
    public struct CompactionSource: Sendable {
        public var items: [SnapshotFile.StreamItem]
        public var receipt: @Sendable (Int) throws -> [UInt8]
        public var later: LaterItems?
        public init(items: [SnapshotFile.StreamItem], receipt: @escaping @Sendable (Int) throws -> [UInt8],
                    later: LaterItems? = nil) {
            self.items = items
            self.receipt = receipt
            self.later = later
        }
        /// Items whose bodies are whole (nothing to read later).
        public init(items: [SnapshotFile.Item]) {
            self.items = items.map { .whole($0.kind, $0.body) }
            self.receipt = { index in
                throw LedgerError(.invalidArgument, "snapshot item \(index) has no receipt to read")
            }
        }
    }

    /// Items made on the thread that writes the snapshot (`CompactionSource.later`).
    public struct LaterItems: Sendable {
        /// At least the bytes the items take in the snapshot (their hints and values).
        public var byteBound: Int
        /// Makes the items, and how to read the receipt of each `.receiptLater` one.
        public var make: @Sendable () throws -> CompactionSource
        public init(byteBound: Int, make: @escaping @Sendable () throws -> CompactionSource) {
            self.byteBound = byteBound
            self.make = make
        }
    }

    public struct CompactionResult: Sendable, Hashable {
        public var coveredSequence: UInt64
        public var snapshotPath: String
        public var snapshotBytes: UInt64
        public var deletedSegments: [UInt64]
        public var deletedSnapshots: [String]
        /// Per item given to `compact`, where its value now is in the new snapshot
        /// (nil for an item without one, `SnapshotFile.encodeLocated`).
        public var valueLocations: [ValueLocation?] = []
    }

    /// Writes a snapshot of `items` covering everything through `lastSequence`,
    /// then deletes the segments and older snapshots it covers (`Spec/FORMAT.md` §8).
    /// Each step is durable before the next, so a crash at any point loses nothing.
    public func compact(items: [SnapshotFile.Item], timeMilliseconds: UInt64) throws -> CompactionResult {
        try compact(source: CompactionSource(items: items), timeMilliseconds: timeMilliseconds)
    }

    /// `compact(items:)` for items whose receipts are read only while the snapshot is
    /// written (`CompactionSource`): the snapshot is streamed to its temporary file
    /// through a fixed-size buffer (`SnapshotFile.writeStream`), so memory does not grow
    /// with the receipts it carries. A receipt that cannot be read (`source.receipt`
    /// throws, e.g. `.corruptRecord`) refuses the compaction: the temporary file is
    /// removed and the writer stays usable (nothing it wrote failed).
    ///
    /// The three steps in one call; `LogEngine` runs the middle one on another thread
    /// while later batches commit (`prepareCompaction`, `writeSnapshot`, `finishCompaction`).
    public func compact(source: CompactionSource, timeMilliseconds: UInt64) throws -> CompactionResult {
        let prepared = try prepareCompaction(source: source, timeMilliseconds: timeMilliseconds)
        let written = LogWriter.writeSnapshot(prepared)
        return try finishCompaction(prepared, written: written, timeMilliseconds: timeMilliseconds)
    }

    /// A compaction whose snapshot is to be written (`writeSnapshot`): everything that
    /// step needs, copied from the writer at `prepareCompaction`, so it may run on any
    /// thread while the writer commits later batches. Not `Sendable` by its fields (the
    /// items' closure reads receipts through pinned handles, which is thread-safe).
    public struct PreparedCompaction: @unchecked Sendable {
        /// The last sequence number the snapshot covers.
        public let covered: UInt64
        let chain: UInt32
        let path: String
        let source: CompactionSource
        let storage: any Storage
        let directory: String
        let ledgerID: LedgerID
        let ledgerScopedTokens: Bool
        /// Checked before each buffer is written: true stops the write (the ledger is
        /// closing), which refuses the compaction like an unreadable receipt.
        let stop: (@Sendable () -> Bool)?
        /// The segments the snapshot covers whole, oldest first: every one but the active
        /// segment when it was prepared (later segments hold later records).
        let coveredSegments: [UInt64]
        /// `willRemoveFile`, for the thread that deletes them.
        let willRemoveFile: (@Sendable (UInt64) throws -> Void)?
    }

    /// What `writeSnapshot` did: the snapshot's size and where each item's value is, or
    /// why there is no snapshot. `refused`: nothing failed that the log depends on (a
    /// receipt could not be read, or the write was stopped), the temporary file is gone
    /// and the writer stays usable. `failed`: a write, sync, rename or directory sync of
    /// the snapshot failed; `finishCompaction` poisons the writer with it, as any failed
    /// write or sync does (`Spec/FORMAT.md` §7.5).
    public enum WrittenSnapshot: Sendable {
        /// `locations`: per item, where its value is in the new snapshot (made on the
        /// snapshot's thread: one per item, millions for a large journal).
        case written(bytes: UInt64, locations: [ValueLocation?], deletedSegments: [UInt64],
                     deletedSnapshots: [String])
        case refused(LedgerError)
        case failed(LedgerError)
    }

    /// Step 0 and the choice of `covered` (`Spec/FORMAT.md` §8): checks the items, rolls
    /// over to a small segment when that leaves less on disk, and takes the last sequence
    /// number and its chain. Runs on the writer's thread, between batches. When a snapshot
    /// of that number is already on disk (a crash lost its marker), a checkpoint record
    /// (at `timeMilliseconds`) is committed first: a snapshot file's name never stands for
    /// two different files while a reader may hold the first one open.
    public func prepareCompaction(source: CompactionSource, timeMilliseconds: UInt64,
                                  stop: (@Sendable () -> Bool)? = nil) throws -> PreparedCompaction {
        try checkUsable()
        try LogWriter.checkItemSizes(source.items)
        do {
            // The disk-use rule (§8): start a new, small active segment first when that
            // leaves less on disk than keeping the current one, so every old segment
            // is covered and deleted below. Its seal takes a sequence number, which the
            // snapshot then covers too (a seal carries no state). The snapshot's size is
            // bounded from the items' lengths (no hint encoded, no receipt read): the plan
            // that groups journal positions is made where the snapshot is written.
            let snapshotBytes = UInt64(SnapshotFile.streamedByteBound(source.items) + (source.later?.byteBound ?? 0))
            if let size = try compactionRolloverBytes(snapshotBytes: snapshotBytes) {
                try rollover(size: size)
            }
            // Values relocated into the new file would otherwise be read through a handle
            // of the old one (`RecordReader` keys handles by covered sequence).
            if storage.exists(Paths.join(directory, LedgerFileNames.snapshot(lastSequence))) {
                try commit([LogRecord(.checkpoint(timeMilliseconds: timeMilliseconds))])
            }
        } catch {
            throw poison(error)
        }
        let covered = lastSequence
        return PreparedCompaction(
            covered: covered, chain: lastChain, path: Paths.join(directory, LedgerFileNames.snapshot(covered)),
            source: source, storage: storage, directory: directory, ledgerID: ledgerID,
            ledgerScopedTokens: tokenScope.isLedgerScoped, stop: stop,
            coveredSegments: segments.dropLast().map(\.number), willRemoveFile: willRemoveFile)
    }

    /// Step 2 (`Spec/FORMAT.md` §8): creates the snapshot durably — temporary file, the
    /// stream of items with their receipts read and checked, `fsync`, `rename`, directory
    /// `fsync`. Touches none of the writer's state, so it may run on another thread while
    /// the writer commits: the records it covers are durable and never rewritten.
    public static func writeSnapshot(_ prepared: PreparedCompaction) -> WrittenSnapshot {
        let storage = prepared.storage
        // An existing snapshot of the same covered sequence (its marker was lost in a
        // crash) is replaced by the atomic rename; removing it first could leave no
        // snapshot at all if the removal reached the disk and the rename did not.
        let temporary = prepared.path + LedgerFileNames.temporarySuffix
        var refusal: LedgerError?
        // The items, then the later ones, made here; each reader given its own indices. A
        // source of later items only (the state layer's) is taken as made, not copied.
        var items = prepared.source.items
        var receipt = prepared.source.receipt
        if let later = prepared.source.later {
            do {
                let made = try later.make()
                try checkItemSizes(made.items)
                let count = items.count
                let (first, rest) = (receipt, made.receipt)
                if items.isEmpty { items = made.items } else { items.append(contentsOf: made.items) }
                receipt = { index in index < count ? try first(index) : try rest(index - count) }
            } catch {
                return .refused((error as? LedgerError)
                    ?? LedgerError(.invalidArgument, "snapshot items failed: \(error)", path: prepared.directory))
            }
        }
        do {
            if storage.exists(temporary) { try storage.removeFile(temporary) }
            let file = try storage.openFile(temporary, mode: .createExclusive)
            defer { file.close() }
            let written: (bytes: UInt64, values: [SnapshotFile.ValueSpan?])
            var writtenThrough: UInt64 = 0
            var writebackStart: UInt64 = 0
            do {
                written = try SnapshotFile.writeStream(
                    ledgerID: prepared.ledgerID, coveredSequence: prepared.covered, chain: prepared.chain,
                    ledgerScopedTokens: prepared.ledgerScopedTokens, items: items,
                    receipt: { index in
                        do { return try receipt(index) } catch {
                            refusal = (error as? LedgerError)
                                ?? LedgerError(.corruptRecord, "snapshot item \(index): \(error)", path: prepared.directory)
                            throw error
                        }
                    },
                    write: { bytes, offset in
                        if let stop = prepared.stop, stop() {
                            let stopped = LedgerError(.closed, "the ledger closed while a compaction wrote its snapshot; nothing was lost, the next compaction starts again",
                                                      path: prepared.directory)
                            refusal = stopped
                            throw stopped
                        }
                        try file.write(bytes, at: offset)
                        // Start the device on what is written every few MiB, so the final
                        // `fsync` does not send a whole large snapshot at once, ahead of
                        // the commits' syncs on the same device.
                        writtenThrough = max(writtenThrough, offset + UInt64(bytes.count))
                        if writtenThrough - writebackStart >= LogWriter.snapshotWritebackBytes {
                            file.startWriteback(offset: writebackStart, count: writtenThrough - writebackStart)
                            writebackStart = writtenThrough
                        }
                    })
                try file.synchronize()
                try storage.rename(temporary, to: prepared.path)
            } catch {
                removeTemporary(temporary, file: file, storage: storage, directory: prepared.directory)
                throw error
            }
            try storage.synchronizeDirectory(prepared.directory)
            let (segments, snapshots) = try removeCovered(prepared)
            let covered = prepared.covered
            return .written(bytes: written.bytes,
                            locations: written.values.map { $0.flatMap { ValueLocation.snapshot(covered: covered, $0) } },
                            deletedSegments: segments, deletedSnapshots: snapshots)
        } catch {
            if let refusal { return .refused(refusal) }
            // A receipt that reads but is not the length its entry records (checked by the
            // stream, outside `receipt`): damaged data, not a failed write; nothing to poison.
            if let typed = error as? LedgerError, typed.code == .corruptRecord { return .refused(typed) }
            return .failed((error as? LedgerError) ?? LedgerError(.io, "\(error)", path: prepared.directory))
        }
    }

    /// How much of a snapshot is written before its writeback starts (`writeSnapshot`).
    static let snapshotWritebackBytes: UInt64 = 8 << 20

    /// Refuses a snapshot item over the record body limit (`FormatLimits.recordBodyBytesMax`).
    private static func checkItemSizes(_ items: [SnapshotFile.StreamItem]) throws {
        for item in items where item.bodyBytes > Int(FormatLimits.recordBodyBytesMax) {
            throw LedgerError(.limitExceeded, "snapshot item of \(item.bodyBytes) bytes", limit: "recordBodyBytesMax")
        }
    }

    /// Steps 3–5 (`Spec/FORMAT.md` §8), once the snapshot is durable, beside the writer
    /// (they touch none of its state): deletes the segments the snapshot covers — never the
    /// segment that was active when it was prepared, which may hold later records — oldest
    /// first, each removal made durable before the next (unsynced removals may reach the
    /// disk in any order, and a surviving older segment with a lost newer one would be a gap,
    /// row R5, on the next open); then the older snapshots. Readers keep a removed file
    /// readable (`willRemoveFile` pins it) until the entries have moved.
    private static func removeCovered(_ prepared: PreparedCompaction) throws -> (segments: [UInt64], snapshots: [String]) {
        let storage = prepared.storage
        let directory = prepared.directory
        var deletedSegments: [UInt64] = []
        for number in prepared.coveredSegments {
            // A segment readers cannot keep open (say, no file descriptor left) stays, with
            // every later one, so those left are still contiguous; the next compaction covers
            // them again. Its values would be unreadable until the state moves otherwise.
            do { try prepared.willRemoveFile?(number) } catch { break }
            try storage.removeFile(Paths.join(directory, LedgerFileNames.segment(number)))
            try storage.synchronizeDirectory(directory)
            deletedSegments.append(number)
        }
        var deletedSnapshots: [String] = []
        for name in try storage.listDirectory(directory) {
            if let other = LedgerFileNames.parseSnapshot(name), other < prepared.covered {
                if other < ValueLocation.snapshotBit {
                    // Kept if readers cannot keep it open; an older snapshot is never read at open.
                    do { try prepared.willRemoveFile?(ValueLocation.snapshotBit | other) } catch { continue }
                }
                try storage.removeFile(Paths.join(directory, name))
                deletedSnapshots.append(name)
            }
        }
        if !deletedSnapshots.isEmpty {
            try storage.synchronizeDirectory(directory)
        }
        return (deletedSegments, deletedSnapshots)
    }

    /// Step 6 (`Spec/FORMAT.md` §8), on the writer's thread once the snapshot is durable and
    /// what it covers removed (or an earlier step's failure handed back): forgets the removed
    /// segments and commits the snapshot marker. Batches committed since `prepareCompaction`
    /// are after `covered` and stay where they are.
    public func finishCompaction(_ prepared: PreparedCompaction, written: WrittenSnapshot, timeMilliseconds: UInt64)
        throws -> CompactionResult {
        let bytes: UInt64, locations: [ValueLocation?], deletedSegments: [UInt64], deletedSnapshots: [String]
        switch written {
        case .written(let writtenBytes, let writtenLocations, let segmentsRemoved, let snapshotsRemoved):
            (bytes, locations, deletedSegments, deletedSnapshots) = (writtenBytes, writtenLocations, segmentsRemoved, snapshotsRemoved)
        case .refused(let error): throw error
        case .failed(let error): throw poison(error)
        }
        let covered = prepared.covered
        snapshotCovered = max(snapshotCovered ?? 0, covered)
        segments.removeAll { deletedSegments.contains($0.number) }
        try checkUsable()
        let marker = RecordBody.snapshotMarker(.init(
            coveredSequence: covered, timeMilliseconds: timeMilliseconds, snapshotBytes: bytes))
        try commit([LogRecord(marker)])
        return CompactionResult(
            coveredSequence: covered, snapshotPath: prepared.path, snapshotBytes: bytes,
            deletedSegments: deletedSegments, deletedSnapshots: deletedSnapshots,
            valueLocations: locations)
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

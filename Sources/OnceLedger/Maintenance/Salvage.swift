import OnceLedgerFormat
import OnceLedgerLog

/// Salvage as a function (etcd's `wal.Repair`, but never in place): read a damaged ledger
/// past its damage (`scan`), decide what can be copied (`plan`), and write it as a new,
/// valid ledger in another directory (`write`), which `onceledger salvage` renders.
///
/// ```swift
/// let scan = try Salvage.scan(directory: damaged)
/// let plan = Salvage.plan(scan)
/// let written = try await Salvage.write(plan, to: SalvageDestination(target: newDirectory))
/// ```
///
/// The source is never changed. `scan.gaps`, `scan.damage`, `scan.unknownLosses` and
/// `plan.notCopied` say what was lost. The new ledger keeps the source's ledger id and
/// token scheme, so every entry keeps its effect token. Take care that no writer has the
/// source open (`PosixStorage.lockHolder(of:)`).
public enum Salvage {
    /// An operational failure of salvage (the destination is unusable, the new ledger did
    /// not read back as written): nothing was installed at the destination.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// Reads `directory` without changing it (`SalvageScan`). With `trustDamagedSnapshot`,
    /// the items of a damaged newest snapshot that still parse are used (reported as unverified).
    public static func scan(
        directory: String, trustDamagedSnapshot: Bool = false,
        progress: ((_ segmentIndex: Int, _ segmentCount: Int, _ records: Int) -> Void)? = nil
    ) throws -> SalvageScan {
        try SalvageScan.scan(directory: directory, trustDamagedSnapshot: trustDamagedSnapshot, progress: progress)
    }

    /// What to copy: the snapshot's items and the records this build can apply, minus the
    /// housekeeping records that describe the old files.
    public static func plan(_ scan: SalvageScan) -> SalvagePlan { SalvagePlan(scan) }

    /// Writes `plan` as a new ledger at `destination` (built beside it and renamed into
    /// place only when complete and read back; `SalvageDestination`).
    public static func write(_ plan: SalvagePlan, to destination: SalvageDestination) async throws -> SalvagePlan.Written {
        try await plan.write(to: destination)
    }
}

/// What salvage copies, decided from the scan: snapshot items and records that this
/// build can apply, minus the housekeeping records that describe the old files.
public struct SalvagePlan: Sendable {
    public var items: [SnapshotFile.Item] = []
    public var records: [LogRecord] = []
    /// Checkpoint, snapshot-marker and seal records left out (they describe the old files).
    public var housekeepingSkipped = 0
    /// Items and records that could not be copied, and why (they count as lost).
    public var notCopied: [String] = []
    public var segmentBytes: UInt64
    public var recordBodyBytesMax: UInt32
    /// The source's identity, which the new ledger keeps so every entry keeps its effect
    /// token (`Spec/FORMAT.md` §9.3); nil when the source's id is unknown (a new random
    /// id). When no valid header or snapshot tells the token scheme, ledger-scoped.
    public var identity: LedgerIdentity?

    public init(_ scan: SalvageScan) {
        segmentBytes = scan.segmentBytes ?? LogConfiguration().segmentBytes
        identity = scan.ledgerID.map { LedgerIdentity(ledgerID: $0, ledgerScopedTokens: scan.ledgerScopedTokens ?? true) }
        recordBodyBytesMax = LogConfiguration(segmentBytes: segmentBytes).recordBodyBytesMax
        let applicableItems: Set<RecordKind> = [.entryState, .memoPut, .journalEntry, .runTerminal, .memoEntry, .runEnd, .memoSweep,
                                                .generationFloor, .entryRetention]
        if let snapshot = scan.snapshot {
            for (index, item) in snapshot.snapshot.items.enumerated() {
                switch RecordBody.decode(kind: item.kind, item.body) {
                case .body where applicableItems.contains(item.kind):
                    items.append(item)
                case .body:
                    notCopied.append("snapshot item \(index): kind \(item.kind) does not belong in a snapshot")
                case .corrupt(let reason):
                    notCopied.append("snapshot item \(index): \(reason)")
                case .unknownKind(let kind):
                    notCopied.append("snapshot item \(index): kind \(kind.rawValue) is not known to this build")
                }
            }
        }
        for record in scan.records {
            let place = "record \(record.header.sequence) (segment \(record.segment) offset \(record.offset))"
            switch RecordBody.decode(kind: record.header.kind, record.body) {
            case .body(.checkpoint), .body(.snapshotMarker), .body(.seal):
                // They describe the old files, not state: copied into the new ledger they
                // would describe files it does not have (a seal names the old successor).
                housekeepingSkipped += 1
            case .body(.entryState):
                notCopied.append("\(place): kind \(record.header.kind) is a snapshot item, not a log record")
            case .body:
                records.append(LogRecord(kind: record.header.kind, body: record.body))
                recordBodyBytesMax = max(recordBodyBytesMax, UInt32(record.body.count))
            case .corrupt(let reason):
                notCopied.append("\(place): \(reason)")
            case .unknownKind(let kind):
                notCopied.append("\(place): kind \(kind.rawValue) is not known to this build")
            }
        }
        raiseGenerationFloorOverDamagedSnapshot(scan)
    }

    /// The generation floor salvage raised because the snapshot it used is damaged (nil when it
    /// did not): see `raiseGenerationFloorOverDamagedSnapshot`.
    public var raisedGenerationFloor: UInt32?

    /// A damaged snapshot read unverified (`--trust-damaged-snapshot`) whose parse stopped at
    /// its last hint lost only that hint — the generation floor (kind 16, `Spec/FORMAT.md` §9.5)
    /// when it has one, the last item this build writes, so the first lost when the file's end
    /// is damaged. The keys its compactions dropped would then start again at a generation they
    /// had, and their next effect would present a token a downstream system already saw, and
    /// de-duplicates away. So the floor is raised past every generation the ledger can have
    /// given out: one above the highest sequence number salvage saw (a generation only ever
    /// rises by one record — a forget, or an intent running a done key again — and the floor is
    /// one above a generation an entry had, so no generation exceeds the number of records
    /// written before it; a ledger made by an earlier salvage restarted its sequence numbers,
    /// hence also one above every generation the items and records name). Raising the floor
    /// changes no entry. (When more hints were lost, entries were lost too, and a lost done key
    /// that runs again is safer with the token it likely had — generation 0 under a lost floor
    /// — which the downstream de-duplicates: the floor is then left as it parsed.)
    private mutating func raiseGenerationFloorOverDamagedSnapshot(_ scan: SalvageScan) {
        guard let snapshot = scan.snapshot, !snapshot.verified, let damaged = scan.damagedSnapshot,
              damaged.stopReason != nil, damaged.hintsUnread == 1
        else { return }
        var bound = UInt64(snapshot.snapshot.coveredSequence)
        for record in scan.records { bound = max(bound, record.header.sequence) }
        for gap in scan.gaps { bound = max(bound, gap.lastSequence) }
        var floor: UInt64 = 0
        for item in items {
            switch RecordBody.decode(kind: item.kind, item.body) {
            case .body(.entryState(let entry)): bound = max(bound, UInt64(entry.generation))
            case .body(.generationFloor(let stored)): floor = max(floor, UInt64(stored))
            default: break
            }
        }
        for record in records {
            if case .body(.intent(let intent)) = RecordBody.decode(kind: record.kind, record.body) {
                bound = max(bound, UInt64(intent.generation))
            }
        }
        let raised = UInt32(clamping: bound == UInt64.max ? bound : bound + 1)
        guard UInt64(raised) > floor else { return }
        items.append(SnapshotFile.Item(kind: .generationFloor, body: RecordBody.generationFloor(floor: raised).encode()))
        raisedGenerationFloor = raised
    }

    public var configuration: LogConfiguration {
        var configuration = LogConfiguration(segmentBytes: segmentBytes)
        configuration.recordBodyBytesMax = recordBodyBytesMax
        // The staging directory is salvage's own and holds its SALVAGE-INCOMPLETE marker
        // (SalvageDestination); the ledger is created beside it.
        configuration.adoptNonEmptyDirectory = true
        configuration.newLedgerIdentity = identity
        return configuration
    }

    public struct Written: Sendable {
        /// The new ledger's entries, as read back.
        public var entries: [EntryInfo]
    }

    /// Writes the new ledger into the destination's staging directory, reopens it and
    /// checks it reads back as the same state an in-memory ledger fed the same items and
    /// records has, and only then renames it into place.
    public func write(to destination: SalvageDestination) async throws -> Written {
        let configuration = self.configuration
        try configuration.validate()
        try await BlockingThread.run(name: "salvage-create") { try destination.create() }
        let target = destination.staging
        let backend = FileRecordLog(directory: target, configuration: configuration, createIfMissing: true)
        try await BlockingThread.run(name: "salvage-open") { try backend.load(item: { _, _ in }, record: { _, _ in }) }
        do {
            guard let engine = backend.engine else {
                throw Salvage.Failure("the new ledger did not open")
            }
            let items = self.items
            if !items.isEmpty { _ = try await engine.compact { _ in items } }
            let groupRecordsMax = min(256, configuration.appendRecordsMax)
            var index = 0
            while index < records.count {
                let group = Array(records[index..<min(index + groupRecordsMax, records.count)])
                _ = try await engine.append(group)
                index += group.count
            }
        } catch {
            try? backend.close()
            throw error
        }
        try await BlockingThread.run(name: "salvage-close") { try backend.close() }

        // Read back through the public API and compare with the same state built in memory.
        let (entries, runs, scope) = try await BlockingThread.run(name: "salvage-check") { () -> ([EntryInfo], [RunInfo], TokenScope) in
            let reopened = try FileStore(directory: target, configuration: configuration, createIfMissing: false)
            defer { try? reopened.close() }
            return (try reopened.currentEntries(), reopened.store.memoRuns(), reopened.tokenScope)
        }
        if let identity, identity.tokenScope != scope {
            throw Salvage.Failure(
                "the new ledger in \(target) does not derive effect tokens as the source does (\(scope), expected \(identity.tokenScope))")
        }
        let memory = InMemoryRecordLog(configuration: configuration, tokenScope: scope)
        try memory.load(item: { _, _ in }, record: { _, _ in })
        if !items.isEmpty { try await memory.compact { _ in items } }
        var index = 0
        while index < records.count {
            let group = Array(records[index..<min(index + configuration.appendRecordsMax, records.count)])
            _ = try await memory.append(group, onDurable: { _ in })
            index += group.count
        }
        try memory.close()
        let replayed = try LogStore(log: memory)
        let expected = try replayed.currentEntries()
        guard expected == entries else {
            throw Salvage.Failure(
                "the new ledger in \(target) does not read back as written (\(entries.count) entries, expected \(expected.count))")
        }
        // The memo too: the same run generations, ends, value counts and bytes.
        let expectedRuns = replayed.memoRuns()
        guard expectedRuns == runs else {
            throw Salvage.Failure(
                "the new ledger in \(target) does not read back as written (its memo holds \(runs.count) run generations, expected \(expectedRuns.count))")
        }
        try await BlockingThread.run(name: "salvage-install") { try destination.install() }
        return Written(entries: entries)
    }
}


import OnceLedgerFormat
import OnceLedgerLog
import Synchronization

/// The record-level plumbing under `FileStore` and `InMemoryStore`: where `LogStore` (the
/// one implementation of the claim rules, `LogStore.swift`) replays its state from and
/// appends its records to. Not an extension point for apps — a store of another kind
/// implements `LedgerStore` — but the benchmarks package and the `onceledger` tool feed
/// a `LogStore` from their own record sources, hence SPI rather than internal.
/// The file log (`FileRecordLog`) and an in-memory list (`InMemoryRecordLog`) implement it.
@_spi(Benchmarks)
public protocol RecordLog: AnyObject, Sendable {
    /// Replays the durable state, once, when the ledger opens: the newest snapshot's
    /// items, then every record after it, in order, each as its kind and encoded body.
    /// The body buffer is valid only during the call (no copy is made per record).
    ///
    /// Before the first item, tell `itemCount` how many snapshot items follow (at most
    /// once), so the ledger can size its tables once instead of growing them a million
    /// entries at a time. A log that cannot tell never calls it.
    func load(itemCount: (Int) -> Void,
              item: (RecordKind, UnsafeRawBufferPointer) throws -> Void,
              record: (RecordKind, UnsafeRawBufferPointer) throws -> Void) throws
    /// Appends `records` as one group, committed together but not atomic after a crash
    /// (a torn batch recovers as its intact prefix, `Spec/RECOVERY.md` §7). When they are durable, calls
    /// `onDurable(firstSequence)` — before returning, and before any later append's
    /// `onDurable` or any compaction's `makeItems` — then returns the first sequence.
    func append(_ records: [LogRecord], onDurable: @escaping @Sendable (UInt64) -> Void) async throws -> UInt64
    /// Replaces everything durable so far by `makeItems(coveredSequence)`'s items.
    func compact(_ makeItems: @escaping @Sendable (UInt64) throws -> [SnapshotFile.Item]) async throws
    func close() throws
    /// How the ledger derives effect tokens (`Spec/FORMAT.md` §9.3); read after `load`.
    /// A durable property of the ledger: the same on every open.
    var tokenScope: TokenScope { get }

    // Values on disk (`LedgerState`): a backend that can say where each record is lets
    // the ledger keep receipts there and read them on demand. The defaults below give no
    // locations: the ledger then keeps receipts in memory (the in-memory backend, tools).

    /// Reads records back at the locations this backend reported; nil when it reports none.
    var recordReader: RecordReader? { get }
    /// `load`, with where each item's or record's value is (nil: the body holds it whole).
    /// An item with a location may be a snapshot hint: its receipt is only there.
    func loadLocated(itemCount: (Int) -> Void,
                     item: (RecordKind, UnsafeRawBufferPointer, ValueLocation?) throws -> Void,
                     record: (RecordKind, UnsafeRawBufferPointer, ValueLocation?) throws -> Void) throws
    /// `append`, whose `onDurable` also gets where each record landed (nil: nowhere to say).
    func appendLocated(_ records: [LogRecord],
                       onDurable: @escaping @Sendable (UInt64, ArraySlice<ValueLocation>?) -> Void) async throws -> UInt64
    /// `compact`, and once the snapshot is durable: `onCompacted` with where each item's
    /// value now is (one per item; nil: none). Appends made while the snapshot was written
    /// may have been applied before it, and appends are applied while it runs (the file
    /// log runs both beside them: `LogEngine.compactStreaming`).
    func compactLocated(_ makeItems: @escaping @Sendable (UInt64) throws -> [SnapshotFile.Item],
                        onCompacted: @escaping @Sendable ([ValueLocation?]) -> Void) async throws
    /// `compactLocated`, for items whose receipts are read only while the snapshot is
    /// written (`LogWriter.CompactionSource`), after `makeSource` returned.
    func compactStreaming(_ makeSource: @escaping @Sendable (UInt64) throws -> LogWriter.CompactionSource,
                          onCompacted: @escaping @Sendable ([ValueLocation?]) -> Void) async throws
}

@_spi(Benchmarks)
extension RecordLog {
    public var recordReader: RecordReader? { nil }

    public func loadLocated(itemCount: (Int) -> Void,
                            item: (RecordKind, UnsafeRawBufferPointer, ValueLocation?) throws -> Void,
                            record: (RecordKind, UnsafeRawBufferPointer, ValueLocation?) throws -> Void) throws {
        try load(itemCount: itemCount, item: { try item($0, $1, nil) }, record: { try record($0, $1, nil) })
    }

    public func appendLocated(
        _ records: [LogRecord], onDurable: @escaping @Sendable (UInt64, ArraySlice<ValueLocation>?) -> Void
    ) async throws -> UInt64 {
        try await append(records, onDurable: { onDurable($0, nil) })
    }

    public func compactLocated(_ makeItems: @escaping @Sendable (UInt64) throws -> [SnapshotFile.Item],
                               onCompacted: @escaping @Sendable ([ValueLocation?]) -> Void) async throws {
        try await compact(makeItems)
    }

    /// For a log that takes whole items: each receipt is read into its item first.
    public func compactStreaming(_ makeSource: @escaping @Sendable (UInt64) throws -> LogWriter.CompactionSource,
                                 onCompacted: @escaping @Sendable ([ValueLocation?]) -> Void) async throws {
        try await compactLocated({ covered in
            let source = try makeSource(covered)
            var items = try Self.wholeItems(source)
            if let later = source.later { items += try Self.wholeItems(try later.make()) }
            return items
        }, onCompacted: onCompacted)
    }

    /// `source`'s items with their receipts read in.
    private static func wholeItems(_ source: LogWriter.CompactionSource) throws -> [SnapshotFile.Item] {
        try source.items.enumerated().map { index, item in
            switch item {
            case .whole(let kind, let body): return SnapshotFile.Item(kind: kind, body: body)
            case .receiptLater, .journalPosition:
                return SnapshotFile.Item(kind: item.kind, body: item.wholeBody(receipt: try source.receipt(index)))
            }
        }
    }

    /// `load` for a caller that has no use for the item count (tools replaying a
    /// ledger to check or copy it).
    public func load(item: (RecordKind, UnsafeRawBufferPointer) throws -> Void,
                     record: (RecordKind, UnsafeRawBufferPointer) throws -> Void) throws {
        try load(itemCount: { _ in }, item: item, record: record)
    }
}

/// The segmented write-ahead log in a directory (under `FileStore`).
package final class FileRecordLog: RecordLog, @unchecked Sendable {
    package let directory: String
    package let storage: any Storage
    package let configuration: LogConfiguration
    package let createIfMissing: Bool
    private let clock: @Sendable () -> UInt64
    private let engineSlot = Mutex<LogEngine?>(nil)

    package init(directory: String, storage: any Storage = PosixStorage(),
                configuration: LogConfiguration = LogConfiguration(), createIfMissing: Bool = true,
                clock: @escaping @Sendable () -> UInt64 = LogEngine.systemMilliseconds) {
        self.directory = directory
        self.storage = storage
        self.configuration = configuration
        self.createIfMissing = createIfMissing
        self.clock = clock
    }

    /// The open engine (after `load`).
    package var engine: LogEngine? { engineSlot.withLock { $0 } }

    /// The open engine's (`LogEngine.tokenScope`); unscoped before `load`.
    package var tokenScope: TokenScope { engine?.tokenScope ?? .unscoped }

    package func load(itemCount: (Int) -> Void,
                     item: (RecordKind, UnsafeRawBufferPointer) throws -> Void,
                     record: (RecordKind, UnsafeRawBufferPointer) throws -> Void) throws {
        let engine = try LogEngine.open(
            directory: directory, storage: storage, configuration: configuration, createIfMissing: createIfMissing,
            clock: clock,
            onSnapshot: { snapshot in
                itemCount(snapshot.itemCount)
                try snapshot.forEachItem(item)
            },
            onRecordInPlace: { scanned in try record(scanned.header.kind, scanned.body) })
        engineSlot.withLock { $0 = engine }
    }

    private func open() throws -> LogEngine {
        guard let engine = engineSlot.withLock({ $0 }) else {
            throw LedgerError(.closed, "the ledger is not open", path: directory)
        }
        return engine
    }

    package func append(_ records: [LogRecord], onDurable: @escaping @Sendable (UInt64) -> Void) async throws -> UInt64 {
        try await open().append(records, onDurable: onDurable)
    }

    package func compact(_ makeItems: @escaping @Sendable (UInt64) throws -> [SnapshotFile.Item]) async throws {
        _ = try await open().compact(makeItems)
    }

    package var recordReader: RecordReader? { engine?.reader }

    /// Opens without reading a version 3 snapshot's values: each done entry's hint comes
    /// with where its value is, each record with where it is in its segment.
    package func loadLocated(itemCount: (Int) -> Void,
                            item: (RecordKind, UnsafeRawBufferPointer, ValueLocation?) throws -> Void,
                            record: (RecordKind, UnsafeRawBufferPointer, ValueLocation?) throws -> Void) throws {
        let engine = try LogEngine.open(
            directory: directory, storage: storage, configuration: configuration, createIfMissing: createIfMissing,
            clock: clock, readSnapshotValues: false,
            onSnapshot: { snapshot in
                itemCount(snapshot.itemCount)
                let covered = snapshot.coveredSequence
                // Journal positions come as their hint (kind 18), which names its first value.
                try snapshot.forEachHint(groupingJournalPositions: true) { kind, body, span in
                    guard let span else { return try item(kind, body, nil) }
                    guard let location = ValueLocation.snapshot(covered: covered, span) else {
                        throw LedgerError(.limitExceeded, "the snapshot's covered sequence \(covered) is too large to locate its values",
                                          path: directory, sequence: covered, limit: "sequence")
                    }
                    try item(kind, body, location)
                }
            },
            onRecordInPlace: { scanned in
                let location = ValueLocation.segment(scanned.segment, offset: scanned.offset,
                                                     bodyBytes: scanned.header.bodyBytes)
                try record(scanned.header.kind, scanned.body, location)
            })
        engineSlot.withLock { $0 = engine }
    }

    package func appendLocated(
        _ records: [LogRecord], onDurable: @escaping @Sendable (UInt64, ArraySlice<ValueLocation>?) -> Void
    ) async throws -> UInt64 {
        try await open().append(records, onDurableAt: { onDurable($0, $1) })
    }

    /// After the relocation, the files the compaction removed are retired: readers that
    /// took a location there before it still read them, then their handles close.
    package func compactLocated(_ makeItems: @escaping @Sendable (UInt64) throws -> [SnapshotFile.Item],
                               onCompacted: @escaping @Sendable ([ValueLocation?]) -> Void) async throws {
        try await compactStreaming({ LogWriter.CompactionSource(items: try makeItems($0)) }, onCompacted: onCompacted)
    }

    /// The receipts are read while the snapshot is streamed, after `makeSource` returned,
    /// on the compaction's own thread (`LogEngine.compactStreaming`).
    package func compactStreaming(_ makeSource: @escaping @Sendable (UInt64) throws -> LogWriter.CompactionSource,
                                  onCompacted: @escaping @Sendable ([ValueLocation?]) -> Void) async throws {
        let engine = try open()
        _ = try await engine.compactStreaming(makeSource, onCompacted: { result in
            onCompacted(result.valueLocations)
            for number in result.deletedSegments { engine.reader.retire(number) }
            for name in result.deletedSnapshots {
                if let covered = LedgerFileNames.parseSnapshot(name), covered < ValueLocation.snapshotBit {
                    engine.reader.retire(ValueLocation.snapshotBit | covered)
                }
            }
        })
    }

    package func close() throws {
        let engine = engineSlot.withLock { slot -> LogEngine? in
            defer { slot = nil }
            return slot
        }
        try engine?.close()
    }
}

/// Records kept in memory (under `InMemoryStore`): durable for the life of this object.
/// Closing it and opening a new store on the same instance replays its records,
/// which models a clean restart (crash models live in `SimulatedStorage`).
package final class InMemoryRecordLog: RecordLog, @unchecked Sendable {
    private struct State {
        var items: [SnapshotFile.Item] = []
        var records: [(RecordKind, [UInt8])] = []
        var lastSequence: UInt64 = 0
        var open = false
    }
    private let state = Mutex(State())
    package let configuration: LogConfiguration
    /// Ledger-scoped with a random id, like a new file ledger; the same on every open
    /// of this instance.
    package let tokenScope: TokenScope

    package init(configuration: LogConfiguration = LogConfiguration(), tokenScope: TokenScope = .ledger(.random())) {
        self.configuration = configuration
        self.tokenScope = tokenScope
    }

    package func load(itemCount: (Int) -> Void,
                     item: (RecordKind, UnsafeRawBufferPointer) throws -> Void,
                     record: (RecordKind, UnsafeRawBufferPointer) throws -> Void) throws {
        let (items, records) = try state.withLock { state -> ([SnapshotFile.Item], [(RecordKind, [UInt8])]) in
            if state.open { throw LedgerError(.locked, "this in-memory ledger is already open") }
            state.open = true
            return (state.items, state.records)
        }
        if !items.isEmpty { itemCount(items.count) }
        for entry in items { try entry.body.withUnsafeBytes { try item(entry.kind, $0) } }
        for (kind, body) in records { try body.withUnsafeBytes { try record(kind, $0) } }
    }

    package func append(_ records: [LogRecord], onDurable: @escaping @Sendable (UInt64) -> Void) async throws -> UInt64 {
        guard !records.isEmpty, records.count <= configuration.appendRecordsMax else {
            throw LedgerError(.invalidArgument, "append needs 1...\(configuration.appendRecordsMax) records")
        }
        for record in records where record.body.count > Int(configuration.recordBodyBytesMax) {
            throw LedgerError(.limitExceeded,
                              "record body is \(record.body.count) bytes; the limit is \(configuration.recordBodyBytesMax)",
                              limit: "recordBodyBytesMax")
        }
        return try state.withLock { state in
            guard state.open else { throw LedgerError(.closed, "the ledger is closed") }
            let first = state.lastSequence + 1
            state.records.append(contentsOf: records.map { ($0.kind, $0.body) })
            state.lastSequence += UInt64(records.count)
            onDurable(first)
            return first
        }
    }

    package func compact(_ makeItems: @escaping @Sendable (UInt64) throws -> [SnapshotFile.Item]) async throws {
        try state.withLock { state in
            guard state.open else { throw LedgerError(.closed, "the ledger is closed") }
            state.items = try makeItems(state.lastSequence)
            state.records.removeAll()
        }
    }

    /// `compact`, then `onCompacted` (no locations: receipts stay in memory) under the same
    /// lock as appends, so the state drops what the compaction left out (`LedgerState.dropRetired`)
    /// before any later record is applied.
    package func compactLocated(_ makeItems: @escaping @Sendable (UInt64) throws -> [SnapshotFile.Item],
                                onCompacted: @escaping @Sendable ([ValueLocation?]) -> Void) async throws {
        try state.withLock { state in
            guard state.open else { throw LedgerError(.closed, "the ledger is closed") }
            state.items = try makeItems(state.lastSequence)
            state.records.removeAll()
            onCompacted([ValueLocation?](repeating: nil, count: state.items.count))
        }
    }

    package func close() throws {
        state.withLock { $0.open = false }
    }

    /// Records currently held (after the last compaction), for tests and tools.
    package var recordCount: Int { state.withLock { $0.records.count } }
}

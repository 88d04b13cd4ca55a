// Test scaffolding shared by the ledger suites (no tests here): one factory that opens a Ledger
// on either store (a FileStore in a fresh temp directory, or an InMemoryStore on a record list
// behind a recording wrapper), reopens it the way a restarted process would, lists what is in the log,
// writes raw records while the ledger is closed (a crash after the intent), plus a manual
// clock, gates and polling that make races deterministic without wall-clock assertions.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import Synchronization
import Testing
import OnceLedgerStoreContract

enum BackendKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case file
    case memory
    var testDescription: String { rawValue }
}

/// Time under the test's control: `now` only moves when a test moves it.
final class ManualClock: Sendable {
    private let value: Mutex<UInt64>
    init(_ start: UInt64 = 1_000) { value = Mutex(start) }
    var now: UInt64 { value.withLock { $0 } }
    func set(_ milliseconds: UInt64) { value.withLock { $0 = milliseconds } }
    func advance(_ milliseconds: UInt64) { value.withLock { $0 += milliseconds } }
    var function: @Sendable () -> UInt64 { { [self] in self.now } }
}

extension Ledger {
    /// Callers currently waiting on the running call of `key` (0 when none runs): in this
    /// ledger's table of running calls, or in its store's `waitForChange` (a caller that found
    /// the key claimed by an operator act or by another `Ledger` on the store).
    func waiterCount(_ key: String) -> Int {
        let here = inFlight.withLock { $0[KeyBytes(key)]?.waiterCount ?? 0 }
        return here + (logStore?.waiterCount(key) ?? 0)
    }

    /// The claim rules under this ledger's store, when it is one of the package's.
    var logStore: LogStore? { (store as? InMemoryStore)?.store ?? (store as? FileStore)?.store }

    func isRunning(_ key: String) -> Bool {
        inFlight.withLock { $0[KeyBytes(key)] != nil }
    }
}

/// Forwards to an `InMemoryRecordLog` and keeps every durable record (in commit order) so
/// tests can audit what was written. Optionally holds the next append at a gate, to open a
/// deterministic window while a commit is "on its way to the disk".
final class RecordingBackend: RecordLog {
    let inner: InMemoryRecordLog
    let log: AppendAudit

    init(inner: InMemoryRecordLog, log: AppendAudit) {
        self.inner = inner
        self.log = log
    }

    func load(itemCount: (Int) -> Void,
              item: (RecordKind, UnsafeRawBufferPointer) throws -> Void,
              record: (RecordKind, UnsafeRawBufferPointer) throws -> Void) throws {
        try inner.load(itemCount: itemCount, item: item, record: record)
    }

    var tokenScope: TokenScope { inner.tokenScope }

    func append(_ records: [LogRecord], onDurable: @escaping @Sendable (UInt64) -> Void) async throws -> UInt64 {
        if let hold = log.takeHold() {
            hold.entered.open()
            await hold.release.wait()
        }
        let log = self.log
        return try await inner.append(records, onDurable: { first in
            log.records.withLock { $0.append(contentsOf: records) }
            onDurable(first)
        })
    }

    func compact(_ makeItems: @escaping @Sendable (UInt64) throws -> [SnapshotFile.Item]) async throws {
        try await inner.compact(makeItems)
    }

    /// Forwarded, so the store hears when a compaction is done (it drops the entries the
    /// compaction left out then, `LedgerState.dropRetired`).
    func compactLocated(_ makeItems: @escaping @Sendable (UInt64) throws -> [SnapshotFile.Item],
                        onCompacted: @escaping @Sendable ([ValueLocation?]) -> Void) async throws {
        try await inner.compactLocated(makeItems, onCompacted: onCompacted)
    }

    func close() throws { try inner.close() }
}

final class AppendAudit: Sendable {
    struct Hold: Sendable {
        let entered = Gate()
        let release = Gate()
    }
    let records = Mutex<[LogRecord]>([])
    private let hold = Mutex<Hold?>(nil)

    /// The next append waits at `release` (after opening `entered`).
    func holdNextAppend() -> Hold {
        let created = Hold()
        hold.withLock { $0 = created }
        return created
    }

    func takeHold() -> Hold? { hold.withLock { slot in defer { slot = nil }; return slot } }
}

/// Opens ledgers of one backend kind on one store, with a manual clock.
final class Harness: Sendable {
    let kind: BackendKind
    let clock: ManualClock
    let directory: String
    let configuration = LogConfiguration(segmentBytes: 128 << 10)
    let memory: InMemoryRecordLog
    let recordLog = AppendAudit()

    init(_ kind: BackendKind, clock: ManualClock = ManualClock(), name: String = #function) {
        self.kind = kind
        self.clock = clock
        let clean = name.filter { $0.isLetter || $0.isNumber }.prefix(40)
        directory = FileManager.default.temporaryDirectory.path + "/ol-ledger-\(clean)-\(UUID().uuidString.prefix(8))"
        memory = InMemoryRecordLog(configuration: configuration)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Opens the ledger: `Ledger.open` on the directory, or an `InMemoryStore` on the same
    /// in-memory record list (replaying what it holds, like a restart).
    func open() throws -> Ledger {
        switch kind {
        case .file:
            return try Ledger.open(directory: directory, configuration: configuration, clock: clock.function)
        case .memory:
            return Ledger(store: try InMemoryStore(log: RecordingBackend(inner: memory, log: recordLog)),
                          clock: clock.function)
        }
    }

    /// Close, then open again: what a restarted process sees.
    func reopen(_ ledger: Ledger) throws -> Ledger {
        try ledger.close()
        return try open()
    }

    /// The records in the log, decoded. File: every record in the directory's segments
    /// (after the newest snapshot), read back with the recovery scanner. Memory: every
    /// record the backend made durable.
    func logRecords() throws -> [RecordBody] {
        switch kind {
        case .file:
            var bodies: [RecordBody] = []
            var failure: String?
            let report = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory, onRecord: { scanned in
                switch RecordBody.decode(kind: scanned.header.kind, scanned.body) {
                case .body(let body): bodies.append(body)
                case .corrupt(let reason): failure = failure ?? "seq \(scanned.header.sequence): \(reason)"
                case .unknownKind(let kind): failure = failure ?? "seq \(scanned.header.sequence): unknown kind \(kind)"
                }
            })
            #expect(report.error == nil, "the scan must not report corruption")
            #expect(failure == nil, "every record body must decode: \(failure ?? "")")
            return bodies
        case .memory:
            return try recordLog.records.withLock { records in
                try records.map { record in
                    guard case .body(let body) = RecordBody.decode(kind: record.kind, record.body) else {
                        throw TestFailure("undecodable \(record.kind) body")
                    }
                    return body
                }
            }
        }
    }

    /// Records that concern a key (not checkpoints or snapshot markers, which the file
    /// log writes on its own, e.g. on close).
    func keyedRecordCount() throws -> Int {
        try logRecords().filter { $0.key != nil }.count
    }

    /// Records of one key (intent, completion, release, resolve, forget), in log order.
    func keyRecords(_ key: String) throws -> [RecordBody] {
        try logRecords().filter { $0.key == key }
    }

    /// Writes records straight into the store while no ledger has it open — e.g. an intent
    /// whose completion never came (the process died during the effect).
    func appendRaw(_ bodies: [RecordBody]) async throws {
        switch kind {
        case .file:
            let engine = try LogEngine.open(directory: directory, configuration: configuration, clock: clock.function)
            for body in bodies { _ = try await engine.append(body) }
            try engine.close()
        case .memory:
            try memory.load(item: { _, _ in }, record: { _, _ in })
            let records = bodies.map(LogRecord.init)
            _ = try await memory.append(records, onDurable: { _ in })
            recordLog.records.withLock { $0.append(contentsOf: records) }
            try memory.close()
        }
    }
}

/// Runs `body` and expects it to throw `LedgerError(.released)` carrying the effect's
/// `EffectDidNotHappen`.
func expectReleased<T>(
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> T
) async {
    let error = await ledgerError(body, sourceLocation: sourceLocation)
    #expect(error?.code == .released, sourceLocation: sourceLocation)
    #expect(error?.underlyingError is EffectDidNotHappen, sourceLocation: sourceLocation)
}


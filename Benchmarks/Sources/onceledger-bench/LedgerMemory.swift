import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog

/// Memory per done entry: the heap growth of a real `Ledger` whose state holds
/// `entries` done entries, measured around `Ledger(backend:)`.
///
/// The state is filled the way opening a ledger fills it: the backend replays, per
/// key, the intent record and the completion record `once` writes (explicit key,
/// no params, attempt 1, a tiny receipt), and `Ledger` applies them to its
/// `LedgerState`. The replaying backend generates each record on the fly and keeps
/// nothing, so the growth is the ledger's state alone (live `once` calls end in
/// the same `LedgerState.apply` of the same two records). Much faster than a
/// million live calls, and not a model of the state.
enum LedgerMemory {
    static func run(label: String, entries: Int, keyBytes: Int, receipt: [UInt8]) throws
        -> BenchResults.MemoryPerEntry
    {
        let backend = ReplayedDoneEntries(entries: entries, keyBytes: keyBytes, receipt: receipt)
        HeapUsage.trim()
        let heapBefore = HeapUsage.heapInUseBytes()
        let residentBefore = HeapUsage.residentBytes()
        let clock = MonotonicClock()
        let cpu = ThreadCPUClock()
        let ledger = try Ledger(backend: backend)
        let seconds = clock.elapsedSeconds
        let cpuSeconds = cpu.elapsedSeconds
        let heapAfter = HeapUsage.heapInUseBytes()
        let residentAfter = HeapUsage.residentBytes()
        guard ledger.entryCount == entries,
              try ledger.entry(BenchKeys.key(0, bytes: keyBytes))?.status == .done,
              try ledger.entry(BenchKeys.key(entries - 1, bytes: keyBytes))?.receipt == receipt
        else {
            throw BenchError("the memory ledger holds \(ledger.entryCount) entries, expected \(entries) done")
        }
        try ledger.close()
        withExtendedLifetime(ledger) {}
        let heap = heapBefore.flatMap { before in heapAfter.map { $0 - before } }
        let resident = residentBefore.flatMap { before in residentAfter.map { $0 - before } }
        let perEntry = heap.map { Double($0) / Double(entries) }
        return BenchResults.MemoryPerEntry(
            label: label, entries: entries, keyBytes: keyBytes, receiptBytes: receipt.count, heapBytes: heap,
            residentBytes: resident, heapBytesPerEntry: perEntry,
            residentBytesPerEntry: resident.map { Double($0) / Double(entries) },
            heapBytesPerEntryLessKey: perEntry.map { $0 - Double(keyBytes) }, seconds: seconds,
            cpuSeconds: cpuSeconds)
    }
}

/// Benchmark keys of an exact UTF-8 length: `k`, zero-padded decimal digits, so
/// the byte count is the same for every index (15 bytes or fewer are stored
/// inline in a Swift `String`; longer ones in a separate heap allocation).
enum BenchKeys {
    static func key(_ index: Int, bytes: Int) -> String {
        let digits = String(index)
        precondition(bytes > digits.count, "key of \(bytes) bytes cannot hold index \(index)")
        return "k" + String(repeating: "0", count: bytes - 1 - digits.count) + digits
    }
}

/// A backend whose durable state is `entries` done entries, generated during
/// `load`; appends are acknowledged and dropped (nothing appends here).
final class ReplayedDoneEntries: LedgerBackend, @unchecked Sendable {
    let entries: Int
    let keyBytes: Int
    let receipt: [UInt8]

    init(entries: Int, keyBytes: Int, receipt: [UInt8]) {
        self.entries = entries
        self.keyBytes = keyBytes
        self.receipt = receipt
    }

    /// Each record is a template body with the key's digits patched in place (keys
    /// have a fixed length, so every body has the same layout), checked against
    /// `RecordBody.encode` for a few keys; that keeps generating off the profile.
    /// No snapshot, so no item count to announce.
    func load(itemCount: (Int) -> Void,
              item: (RecordKind, UnsafeRawBufferPointer) throws -> Void,
              record: (RecordKind, UnsafeRawBufferPointer) throws -> Void) throws {
        let time = LogEngine.systemMilliseconds()
        func encoded(_ index: Int) -> [(RecordKind, [UInt8])] {
            DoneEntryRecords.records(key: BenchKeys.key(index, bytes: keyBytes), receipt: receipt,
                                     timeMilliseconds: time).map { ($0.kind, $0.encode()) }
        }
        let keyUTF8 = Array(BenchKeys.key(0, bytes: keyBytes).utf8)
        var templates = encoded(0)
        let offsets = try templates.map { _, body in
            guard let at = (0...(body.count - keyUTF8.count)).first(where: { Array(body[$0..<($0 + keyUTF8.count)]) == keyUTF8 })
            else { throw BenchError("the key is not in its record body") }
            return at + keyUTF8.count
        }
        for index in 0..<entries {
            for slot in templates.indices {
                var value = index
                var at = offsets[slot]
                while value > 0 {
                    at -= 1
                    templates[slot].1[at] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
                if index == 1 || index == entries - 1 || index % 100_003 == 0 {
                    guard templates[slot].1 == encoded(index)[slot].1 else {
                        throw BenchError("the patched record body of key \(index) differs from RecordBody.encode")
                    }
                }
                try templates[slot].1.withUnsafeBytes { try record(templates[slot].0, $0) }
            }
        }
    }

    func append(_ records: [LogRecord], onDurable: @escaping @Sendable (UInt64) -> Void) async throws -> UInt64 {
        onDurable(1)
        return 1
    }

    func compact(_ makeItems: @escaping @Sendable (UInt64) throws -> [SnapshotFile.Item]) async throws {}
    let tokenScope = TokenScope.ledger(.random())

    func close() throws {}
}

/// The two records one successful `once` writes for a fresh explicit key.
enum DoneEntryRecords {
    static func records(key: String, receipt: [UInt8], timeMilliseconds: UInt64) -> [RecordBody] {
        [.intent(.init(key: key, fingerprint: IdempotencyKey.noFingerprint, attempt: 1, generation: 0,
                       scope: .forever, windowMilliseconds: 0, timeMilliseconds: timeMilliseconds)),
         .completion(.init(key: key, attempt: 1, timeMilliseconds: timeMilliseconds, receipt: receipt))]
    }
}

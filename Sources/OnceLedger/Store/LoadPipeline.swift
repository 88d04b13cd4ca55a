import Dispatch
import Foundation
import OnceLedgerFormat
import OnceLedgerLog

/// An open's replay of the log's records, on two threads. The thread that scans the log
/// decodes each record (`LedgerState.fields`, `MemoTable.decode`: its fields, checked; a
/// key's hash) and copies its body into a batch; a second thread applies full batches, in
/// log order, to the entries of `once` (`LedgerState.applyDecoded`) and to the memo
/// (`MemoTable.apply(_:body:location:)`), while the scan reads, checks and decodes the next
/// ones. In a 10 M-position journal's open each half is about as long as the other
/// (`Benchmarks/BENCH_RESULTS.md`).
///
/// - Applying a decoded record cannot fail, so every error is still thrown by the scanning
///   thread, in log order, and nothing it throws depends on the second thread's timing.
/// - The two tables are the second thread's from the first full batch until `finish()`;
///   `replayItem`, `applyMemoItem` (a snapshot's items, which come before any record),
///   `withState` and `withTable` first wait until every batch handed over is applied.
/// - A load of fewer records than one batch starts no thread.
/// - The semaphores order each batch's writes before its reads, both ways.
final class LoadPipeline: @unchecked Sendable {
    /// Records per batch by default: large enough that a handover (two semaphore operations)
    /// costs nothing per record, small enough to keep a batch's bytes in the cache.
    static let defaultBatchRecords = 4096
    /// Body bytes per batch by default: a batch is handed over at 4,096 records or once its
    /// bodies reach this, so memo values of up to 1 MiB keep the pipeline's memory at a few
    /// MiB (three batches), not 4,096 values each.
    static let defaultBatchBytes = 1 << 20
    /// Batches in flight: one being filled, one being applied, one spare for jitter.
    private static let batchCount = 3

    private struct Pending {
        /// An entry record's fields, key hash and location (`LedgerState.decodeForReplay`);
        /// a memo record's fields and location (`MemoTable.decode`; no hash).
        var record: LedgerState.ReplayRecord
        var kind: RecordKind
        /// A memo record (the memo table's), or an entry's (the state's).
        var memo: Bool
        var bodyStart: Int
        var bodyCount: Int
    }

    /// (Each property is one thread's at a time, as the semaphores hand it over: no
    /// access needs the runtime's exclusivity check, which costs as much as a record's apply.)
    private final class Batch {
        @exclusivity(unchecked) var records: [Pending] = []
        @exclusivity(unchecked) var bytes: [UInt8] = []
        /// The last batch: the applying thread stops after it.
        @exclusivity(unchecked) var last = false
    }

    private let batchRecords: Int
    private let batchBytes: Int
    private let batches: [Batch]
    /// The tables: the applying thread's while it runs, the caller's otherwise.
    @exclusivity(unchecked) private var state: LedgerState
    @exclusivity(unchecked) private var table: MemoTable
    /// The batch being filled (the scanning thread's), an index into `batches`.
    @exclusivity(unchecked) private var filling = 0
    /// The batch the applying thread takes next.
    @exclusivity(unchecked) private var applying = 0
    /// Counts the batches handed over and not yet taken by the applying thread.
    private let filled = DispatchSemaphore(value: 0)
    /// Counts the batches free to fill, besides the one being filled.
    private let free = DispatchSemaphore(value: LoadPipeline.batchCount - 1)
    /// Signalled once by the applying thread, after the last batch.
    private let stopped = DispatchSemaphore(value: 0)
    /// Whether the applying thread runs (from the first full batch until `finish()`).
    @exclusivity(unchecked) private var started = false
    /// Whether this pipeline started its applying thread at all (for tests).
    private(set) var startedThread = false

    init(state: consuming LedgerState = LedgerState(), table: consuming MemoTable = MemoTable(),
         batchRecords: Int = LoadPipeline.defaultBatchRecords, batchBytes: Int = LoadPipeline.defaultBatchBytes) {
        self.state = state
        self.table = table
        self.batchRecords = max(1, batchRecords)
        self.batchBytes = max(1, batchBytes)
        self.batches = (0..<LoadPipeline.batchCount).map { _ in Batch() }
        // The first batch to fill is taken without waiting (`free` counts the others).
    }

    /// Decodes a record and queues it: a memo record (kinds 13–15) for the memo table, any
    /// other for the entries. Throws what `MemoTable.decode` or `LedgerState.fields` throws,
    /// before anything of it is applied.
    func add(kind: RecordKind, body: UnsafeRawBufferPointer, location: ValueLocation?) throws {
        let memo = kind.isMemo
        let record = memo
            ? LedgerState.ReplayRecord(fields: try MemoTable.decode(kind: kind, body), hash: 0, location: location)
            : try LedgerState.decodeForReplay(kind: kind, body, location: location)
        let batch = batches[filling]
        batch.records.append(Pending(record: record, kind: kind, memo: memo, bodyStart: batch.bytes.count,
                                     bodyCount: body.count))
        batch.bytes.append(contentsOf: body)
        if batch.records.count >= batchRecords || batch.bytes.count >= batchBytes { handOver(last: false) }
    }

    /// Runs `body` with the memo table on this thread, after every record queued so far is applied.
    func withTable<R>(_ body: (inout MemoTable) throws -> R) rethrows -> R {
        drain()
        return try body(&table)
    }

    /// Runs `body` with the entries' state on this thread, after every record queued so far
    /// is applied.
    func withState<R>(_ body: (inout LedgerState) throws -> R) rethrows -> R {
        drain()
        return try body(&state)
    }

    /// Applies what is still queued and stops the applying thread; then `takeState()` and
    /// `takeTable()` hand the tables over. Call it exactly once, on every path (an open that
    /// throws too: the thread waits for it).
    func finish() {
        if started {
            handOver(last: true)
            stopped.wait()
            started = false
        } else {
            applyAll(batches[filling])
        }
    }

    /// A snapshot's item for the entries (`LedgerState.replay`), on this thread: items come
    /// before any record, so this is `withState` without a closure per item (a million
    /// items are a million calls).
    func replayItem(kind: RecordKind, body: UnsafeRawBufferPointer, location: ValueLocation?) throws {
        drain()
        try state.replay(kind: kind, body: body, location: location)
    }

    /// A snapshot's memo item or journal-positions hint (`MemoTable.apply(kind:body:location:)`),
    /// on this thread, as `replayItem`.
    func applyMemoItem(kind: RecordKind, body: UnsafeRawBufferPointer, location: ValueLocation?) throws {
        drain()
        try table.apply(kind: kind, body: body, location: location)
    }

    /// The entries' state, after `finish()`.
    func takeState() -> LedgerState { exchange(&state, with: LedgerState()) }

    /// The memo table, after `finish()`.
    func takeTable() -> MemoTable { exchange(&table, with: MemoTable()) }

    /// Applies the batch being filled and every batch handed over, and waits until the
    /// applying thread is idle; it then waits for the next batch.
    private func drain() {
        guard started else {
            if !batches[filling].records.isEmpty { applyAll(batches[filling]) }
            return
        }
        if !batches[filling].records.isEmpty { handOver(last: false) }
        // Every batch but the one being filled is free once it is applied.
        for _ in 0..<(LoadPipeline.batchCount - 1) { free.wait() }
        for _ in 0..<(LoadPipeline.batchCount - 1) { free.signal() }
    }

    /// Hands the batch being filled to the applying thread (starting it the first time) and
    /// takes the next free batch to fill.
    private func handOver(last: Bool) {
        batches[filling].last = last
        if !started {
            started = true
            startedThread = true
            let thread = Thread { [self] in applyLoop() }
            thread.name = "onceledger-load"
            thread.stackSize = 1 << 20
            thread.start()
        }
        filled.signal()
        guard !last else { return }
        free.wait()
        filling = (filling + 1) % LoadPipeline.batchCount
    }

    /// The applying thread: applies batches in the order they were handed over, until the last.
    private func applyLoop() {
        while true {
            filled.wait()
            let batch = batches[applying]
            applying = (applying + 1) % LoadPipeline.batchCount
            let last = batch.last
            applyAll(batch)
            batch.last = false
            if last { break }
            free.signal()
        }
        stopped.signal()
    }

    private func applyAll(_ batch: Batch) {
        batch.bytes.withUnsafeBytes { raw in
            batch.records.withUnsafeBufferPointer { records in
                for index in records.indices {
                    let start = records[index].bodyStart
                    let body = UnsafeRawBufferPointer(rebasing: raw[start..<(start + records[index].bodyCount)])
                    let record = records[index].record
                    if records[index].memo {
                        table.apply(record.fields, body: body, location: record.location)
                        continue
                    }
                    // The next entry's slot is requested now, so it has arrived when that entry applies.
                    if index + 1 < records.count, !records[index + 1].memo { state.prefetch(hash: records[index + 1].record.hash) }
                    state.applyDecoded(record, kind: records[index].kind, body)
                }
            }
        }
        batch.records.removeAll(keepingCapacity: true)
        batch.bytes.removeAll(keepingCapacity: true)
    }
}

import Dispatch
import Foundation
import OnceLedgerFormat
import OnceLedgerLog

/// The memo's part of an open, on two threads. The thread that scans the log decodes each
/// memo record (`MemoTable.decode`: its fields, checked) and copies its body into a batch; a
/// second thread applies full batches to the table (`MemoTable.apply(_:body:location:)`), in
/// log order, while the scan reads, checks and decodes the next ones. A journal of 10 M
/// positions spends about as long in each half (`Benchmarks/BENCH_RESULTS.md`).
///
/// - Applying a decoded record cannot fail, so every error is still thrown by the scanning
///   thread, in log order, and nothing it throws depends on the second thread's timing.
/// - The table is the second thread's from the first full batch until `finish()` returns
///   it; `withTable` (a snapshot's items, which come before any record) waits until every
///   batch handed over is applied.
/// - A load of fewer records than one batch starts no thread.
/// - The semaphores order each batch's writes before its reads, both ways.
final class MemoLoadPipeline: @unchecked Sendable {
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
        var fields: RecordBody.Fields
        var bodyStart: Int
        var bodyCount: Int
        var location: ValueLocation?
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
    /// The table: the applying thread's while it runs, the caller's otherwise.
    @exclusivity(unchecked) private var table: MemoTable
    /// The batch being filled (the scanning thread's), an index into `batches`.
    @exclusivity(unchecked) private var filling = 0
    /// The batch the applying thread takes next.
    @exclusivity(unchecked) private var applying = 0
    /// Counts the batches handed over and not yet taken by the applying thread.
    private let filled = DispatchSemaphore(value: 0)
    /// Counts the batches free to fill, besides the one being filled.
    private let free = DispatchSemaphore(value: MemoLoadPipeline.batchCount - 1)
    /// Signalled once by the applying thread, after the last batch.
    private let stopped = DispatchSemaphore(value: 0)
    /// Whether the applying thread runs (from the first full batch until `finish()`).
    @exclusivity(unchecked) private var started = false
    /// Whether this pipeline started its applying thread at all (for tests).
    private(set) var startedThread = false

    init(table: consuming MemoTable, batchRecords: Int = MemoLoadPipeline.defaultBatchRecords,
         batchBytes: Int = MemoLoadPipeline.defaultBatchBytes) {
        self.table = table
        self.batchRecords = max(1, batchRecords)
        self.batchBytes = max(1, batchBytes)
        self.batches = (0..<MemoLoadPipeline.batchCount).map { _ in Batch() }
        // The first batch to fill is taken without waiting (`free` counts the others).
    }

    /// Decodes a memo record (kinds 13–15) and queues it; throws what `MemoTable.decode`
    /// throws, before anything of it is applied.
    func add(kind: RecordKind, body: UnsafeRawBufferPointer, location: ValueLocation?) throws {
        let fields = try MemoTable.decode(kind: kind, body)
        let batch = batches[filling]
        batch.records.append(Pending(fields: fields, bodyStart: batch.bytes.count, bodyCount: body.count,
                                     location: location))
        batch.bytes.append(contentsOf: body)
        if batch.records.count >= batchRecords || batch.bytes.count >= batchBytes { handOver(last: false) }
    }

    /// Runs `body` with the table on this thread, after every record queued so far is applied.
    func withTable<R>(_ body: (inout MemoTable) throws -> R) rethrows -> R {
        drain()
        return try body(&table)
    }

    /// Applies what is still queued, stops the applying thread, and returns the table.
    /// Call it exactly once, on every path (an open that throws too: the thread waits for it).
    func finish() -> MemoTable {
        if started {
            handOver(last: true)
            stopped.wait()
            started = false
        } else {
            applyAll(batches[filling])
        }
        return exchange(&table, with: MemoTable())
    }

    /// Applies the batch being filled and every batch handed over, and waits until the
    /// applying thread is idle; it then waits for the next batch.
    private func drain() {
        guard started else {
            if !batches[filling].records.isEmpty { applyAll(batches[filling]) }
            return
        }
        if !batches[filling].records.isEmpty { handOver(last: false) }
        // Every batch but the one being filled is free once it is applied.
        for _ in 0..<(MemoLoadPipeline.batchCount - 1) { free.wait() }
        for _ in 0..<(MemoLoadPipeline.batchCount - 1) { free.signal() }
    }

    /// Hands the batch being filled to the applying thread (starting it the first time) and
    /// takes the next free batch to fill.
    private func handOver(last: Bool) {
        batches[filling].last = last
        if !started {
            started = true
            startedThread = true
            let thread = Thread { [self] in applyLoop() }
            thread.name = "onceledger-memo-load"
            thread.stackSize = 1 << 20
            thread.start()
        }
        filled.signal()
        guard !last else { return }
        free.wait()
        filling = (filling + 1) % MemoLoadPipeline.batchCount
    }

    /// The applying thread: applies batches in the order they were handed over, until the last.
    private func applyLoop() {
        while true {
            filled.wait()
            let batch = batches[applying]
            applying = (applying + 1) % MemoLoadPipeline.batchCount
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
                    table.apply(records[index].fields, body: body, location: records[index].location)
                }
            }
        }
        batch.records.removeAll(keepingCapacity: true)
        batch.bytes.removeAll(keepingCapacity: true)
    }
}

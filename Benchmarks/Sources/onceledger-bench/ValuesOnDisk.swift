import Foundation
import Glibc
import OnceLedger
import Synchronization
import OnceLedgerFormat
import OnceLedgerLog

/// Targets T11–T13 (`Benchmarks/README.md`): receipts stay on disk, the ledger keeps
/// their locations. For each receipt size, a ledger of `entries` done entries is built
/// (`LedgerOpenTime.build`: the intent and completion `once` writes per key), opened
/// from its segments, compacted (the receipts go into the snapshot's values section),
/// and opened again from the snapshot, with a cold page cache and a warm one. Each open
/// is measured as the heap growth per entry (less the key), the process's resident
/// set after it (after `malloc_trim`, so memory freed by the build does not count) and
/// its time. Then `alreadyDone` calls with a warm cache on one task: `onceBytes` of a
/// done key, whose receipt is read from the snapshot each time.
enum ValuesOnDisk {
    struct Row {
        var receiptBytes: Int
        var entries: Int
        var diskBytes: UInt64
        var open: String
        var seconds: Double
        var heapPerEntryLessKey: Double?
        var residentBytes: Int?
    }

    struct Result {
        var rows: [Row] = []
        /// (receipt bytes, calls per second, calls)
        /// Receipt size, calls per second (wall), calls per second of the process's CPU time, calls.
        var alreadyDone: [(Int, Double, Double, Int)] = []
        /// (receipt bytes, compaction seconds, peak resident bytes during the compaction)
        var compaction: [(Int, Double, Int?)] = []
        /// (receipt bytes, snapshot on its own thread, on the I/O thread): one caller's new
        /// `once` calls beside a compaction of the compacted ledger.
        var beside: [(Int, CompactionBeside, CompactionBeside)] = []
    }

    static let keyBytes = 14

    static func run(root: String, entries: Int, receiptSizes: [Int], seconds: Double, keep: Bool,
                    progress: Progress) async throws
        -> Result
    {
        var result = Result()
        let configuration = LogConfiguration()
        for size in receiptSizes {
            let directory = root + "/values-\(size)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
            let receipt = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 17) }
            progress.say("values on disk: building \(entries) entries with \(size)-byte receipts")
            _ = try await BlockingThread.run(name: "values-build") {
                try LedgerOpenTime.build(directory: directory, configuration: configuration, entries: entries,
                                         keyBytes: keyBytes, receipt: receipt)
            }
            func measuredOpen(_ label: String, cold: Bool) async throws -> Row {
                let (ledger, elapsed, heapBefore, heapAfter, resident) = try await BlockingThread.run(name: "values-open") {
                    if cold { try LedgerOpenTime.dropPageCache(directory) }
                    HeapUsage.trim()
                    let heapBefore = HeapUsage.heapInUseBytes()
                    let clock = MonotonicClock()
                    let ledger = try LedgerOpenTime.openLedger(directory: directory, configuration: configuration)
                    let elapsed = clock.elapsedSeconds
                    let heapAfter = HeapUsage.heapInUseBytes()
                    HeapUsage.trim()
                    let resident = HeapUsage.residentBytes()
                    return (ledger, elapsed, heapBefore, heapAfter, resident)
                }
                let count = try await ledger.entryCount()
                guard count == entries,
                      try await ledger.entry(BenchKeys.key(entries - 1, bytes: keyBytes))?.receipt == receipt
                else { throw BenchError("the values ledger does not hold \(entries) done entries") }
                try await BlockingThread.run { try ledger.close() }
                withExtendedLifetime(ledger) {}
                let perEntry = heapBefore.flatMap { before in
                    heapAfter.map { Double($0 - before) / Double(entries) - Double(keyBytes) }
                }
                return Row(receiptBytes: size, entries: entries, diskBytes: try directoryBytes(directory),
                           open: label, seconds: elapsed, heapPerEntryLessKey: perEntry, residentBytes: resident)
            }
            result.rows.append(try await measuredOpen("segments, cold", cold: true))
            progress.say("values on disk: compacting")
            let compacting = try await BlockingThread.run {
                try LedgerOpenTime.openLedger(directory: directory, configuration: configuration)
            }
            // Peak resident during the compaction alone: the high-water mark is reset to
            // the resident set of the open ledger first (`VmHWM`, /proc/self/clear_refs).
            HeapUsage.trim()
            let reset = HeapUsage.resetPeakResident()
            let compactClock = MonotonicClock()
            try await compacting.compact()
            let compactSeconds = compactClock.elapsedSeconds
            result.compaction.append((size, compactSeconds, reset ? HeapUsage.peakResidentBytes() : nil))
            try await BlockingThread.run { try compacting.close() }
            result.rows.append(try await measuredOpen("snapshot, cold", cold: true))
            result.rows.append(try await measuredOpen("snapshot, warm", cold: false))

            // One caller's new `once` calls beside a compaction of the compacted ledger, with
            // the snapshot written on its own thread (the default), then on the I/O thread.
            var besides: [CompactionBeside] = []
            for background in [true, false] {
                var chosen = configuration
                chosen.compactsInBackground = background
                let besideConfiguration = chosen
                let besideLedger = try await BlockingThread.run {
                    try LedgerOpenTime.openLedger(directory: directory, configuration: besideConfiguration)
                }
                let counter = Mutex(0)
                let label = background ? "b" : "f"
                besides.append(try await CompactionBeside.measure(besideLedger) {
                    let index = counter.withLock { value in
                        defer { value += 1 }
                        return value
                    }
                    _ = try await besideLedger.onceBytes(IdempotencyKey("beside-\(label)-\(index)")) { _ in [1, 2, 3] }
                })
                try await BlockingThread.run { try besideLedger.close() }
            }
            result.beside.append((size, besides[0], besides[1]))

            progress.say("values on disk: alreadyDone calls for \(Format.fixed(seconds, 1)) s")
            let ledger = try await BlockingThread.run {
                try LedgerOpenTime.openLedger(directory: directory, configuration: configuration)
            }
            // Warm the page cache for the keys the loop reads.
            let keys = (0..<min(entries, 4096)).map { IdempotencyKey(BenchKeys.key(($0 * 7919) % entries, bytes: keyBytes)) }
            for key in keys { _ = try await ledger.entry(key) }
            let clock = MonotonicClock()
            let cpuBefore = Self.processCPUSeconds()
            var calls = 0
            while clock.elapsedSeconds < seconds {
                for key in keys {
                    guard case .alreadyDone(let stored, _) = try await ledger.onceBytes(key, { _ in [] }),
                          stored.count == size
                    else { throw BenchError("a done key ran its effect or lost its receipt") }
                }
                calls += keys.count
            }
            let cpuSeconds = Self.processCPUSeconds() - cpuBefore
            result.alreadyDone.append((size, Double(calls) / clock.elapsedSeconds, Double(calls) / cpuSeconds, calls))
            try await BlockingThread.run { try ledger.close() }
            if !keep { try FileManager.default.removeItem(atPath: directory) }
        }
        return result
    }

    static func directoryBytes(_ directory: String) throws -> UInt64 {
        try PosixStorage().listDirectory(directory).reduce(UInt64(0)) { total, name in
            var info = stat()
            return total + (stat(directory + "/" + name, &info) == 0 ? UInt64(info.st_size) : 0)
        }
    }

    /// User + system CPU time of the whole process (every thread), in seconds: a rate per CPU
    /// second moves less than a rate per wall second when other processes share the cores.
    static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    static func render(_ result: Result) -> String {
        var table = TextTable(["receipt", "entries", "on disk", "open from", "time", "heap/entry − key", "RSS after open"])
        for row in result.rows {
            table.add([
                "\(row.receiptBytes) B", Format.grouped(row.entries), Format.megabytes(row.diskBytes), row.open,
                Format.seconds(row.seconds), row.heapPerEntryLessKey.map { Format.fixed($0, 1) + " B" } ?? "n/a",
                row.residentBytes.map { Format.megabytes(UInt64($0)) } ?? "n/a",
            ])
        }
        var calls = TextTable(["receipt", "alreadyDone calls/s (1 task, warm)", "per CPU second", "calls"])
        for (size, rate, cpuRate, count) in result.alreadyDone {
            calls.add(["\(size) B", Format.rate(rate), Format.rate(cpuRate), Format.grouped(count)])
        }
        var compactions = TextTable(["receipt", "compaction time", "peak resident during compaction"])
        for (size, seconds, peak) in result.compaction {
            compactions.add(["\(size) B", Format.seconds(seconds), peak.map { Format.megabytes(UInt64($0)) } ?? "n/a"])
        }
        var beside = ""
        for (size, background, foreground) in result.beside {
            beside += "\n\(size) B receipts: new `once` calls of one task beside compacting the compacted ledger: "
                + "snapshot on its own thread, \(background.summary("returned")); on the I/O thread, \(foreground.summary("returned"))"
        }
        return "Values on disk (T11–T13)\n" + table.render() + "\n" + calls.render() + "\n" + compactions.render() + beside
            + "\nper CPU second = calls / (user + system CPU time of the process during the loop)"
            + "\npeak resident = VmHWM (/proc/self/status) after the compaction, reset to the open ledger's resident set just before it"
    }
}


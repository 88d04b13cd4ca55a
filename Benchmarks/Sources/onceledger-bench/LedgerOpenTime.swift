import Glibc
import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog

/// Open time of a ledger directory holding `entries` done entries (targets T4
/// and T5: "open/recover 1 M done entries: < 1 s from segments, faster from a snapshot").
///
/// Builds the directory through `LogWriter` (the intent and completion record of
/// each key, as `once` writes them, in full commit batches, so building is quick),
/// times `Ledger(backend: FileBackend(...))` — lock, scan, replay into the ledger
/// state — with a cold and a warm page cache, then `ledger.compact()`, then the
/// same opens again, now from the snapshot. Cold = the directory's file pages
/// dropped with `posix_fadvise(DONTNEED)` (a virtual disk's host may still cache them).
///
/// Each kind of open runs `opensPerKind` times and the median counts. One sample is
/// not enough on a VM that reports freed memory to its host (virtio-balloon free page
/// reporting, as on this project's build machine): an open that follows a pause
/// re-faults the memory the previous open freed through the host and can take twice
/// as long, warm cache or cold.
enum LedgerOpenTime {
    static let opensPerKind = 3

    static func run(directory: String, configuration: LogConfiguration, entries: Int, keyBytes: Int,
                    receipt: [UInt8]) async throws -> BenchResults.LedgerOpen
    {
        let buildClock = MonotonicClock()
        let (records, recordBytes) = try await BlockingThread.run(name: "ledger-build") {
            try build(directory: directory, configuration: configuration, entries: entries, keyBytes: keyBytes,
                      receipt: receipt)
        }
        let buildSeconds = buildClock.elapsedSeconds
        let segments = try segmentCount(directory)

        func timedOpens() async throws -> [BenchResults.Timing] {
            var timings: [BenchResults.Timing] = []
            for cache in ["cold", "warm"] {
                var samples: [(seconds: Double, cpuSeconds: Double)] = []
                for _ in 0..<opensPerKind {
                    samples.append(try await BlockingThread.run(name: "ledger-open") {
                        if cache == "cold" { try dropPageCache(directory) }
                        let clock = MonotonicClock()
                        let cpu = ThreadCPUClock()
                        let ledger = try openLedger(directory: directory, configuration: configuration)
                        let seconds = clock.elapsedSeconds
                        let cpuSeconds = cpu.elapsedSeconds
                        try check(ledger, entries: entries, keyBytes: keyBytes, receipt: receipt)
                        try ledger.close()
                        return (seconds, cpuSeconds)
                    })
                }
                samples.sort { $0.seconds < $1.seconds }
                let median = samples[samples.count / 2]
                timings.append(.init(cache: cache, seconds: median.seconds, cpuSeconds: median.cpuSeconds,
                                     samples: samples.map(\.seconds)))
            }
            return timings
        }

        let fromSegments = try await timedOpens()
        let ledger = try await BlockingThread.run { try openLedger(directory: directory, configuration: configuration) }
        let compactClock = MonotonicClock()
        try await ledger.compact()
        let compactSeconds = compactClock.elapsedSeconds
        try await BlockingThread.run { try ledger.close() }
        let snapshotBytes = try PosixStorage().listDirectory(directory)
            .filter { LedgerFileNames.parseSnapshot($0) != nil }
            .reduce(UInt64(0)) { total, name in
                var info = stat()
                return total + (stat(directory + "/" + name, &info) == 0 ? UInt64(info.st_size) : 0)
            }
        let segmentsAfter = try segmentCount(directory)
        let fromSnapshot = try await timedOpens()
        return BenchResults.LedgerOpen(
            entries: entries, keyBytes: keyBytes, receiptBytes: receipt.count, records: records, segments: segments,
            recordBytes: recordBytes, buildSeconds: buildSeconds, fromSegments: fromSegments, compactSeconds: compactSeconds,
            snapshotBytes: snapshotBytes, segmentsAfterCompaction: segmentsAfter, fromSnapshot: fromSnapshot)
    }

    /// What `Ledger.open(directory:)` does, with the bench's configuration.
    static func openLedger(directory: String, configuration: LogConfiguration) throws -> Ledger {
        try Ledger(backend: FileBackend(directory: directory, configuration: configuration, createIfMissing: false))
    }

    /// Returns the number of records written (a clean close adds one checkpoint)
    /// and their frame bytes.
    static func build(directory: String, configuration: LogConfiguration, entries: Int, keyBytes: Int,
                      receipt: [UInt8]) throws -> (Int, UInt64)
    {
        let (writer, lock, _) = try LogWriter.recover(directory: directory, storage: PosixStorage(),
                                                      configuration: configuration)
        defer { lock.unlock() }
        let time = LogEngine.systemMilliseconds()
        var batch: [LogRecord] = []
        var records = 0
        var recordBytes: UInt64 = 0
        // 512 keys = 1024 records per batch (see `RecoveryThroughput.build` on why not more).
        for index in 0..<entries {
            for body in DoneEntryRecords.records(key: BenchKeys.key(index, bytes: keyBytes), receipt: receipt,
                                                 timeMilliseconds: time) {
                let record = LogRecord(body)
                recordBytes += UInt64(RecordFrame.frameBytes(bodyBytes: record.body.count))
                batch.append(record)
            }
            if batch.count >= 1024 || index == entries - 1 {
                try writer.commit(batch)
                records += batch.count
                batch.removeAll(keepingCapacity: true)
            }
        }
        writer.close(timeMilliseconds: LogEngine.systemMilliseconds())
        return (records + 1, recordBytes)
    }

    private static func check(_ ledger: Ledger, entries: Int, keyBytes: Int, receipt: [UInt8]) throws {
        guard ledger.entryCount == entries,
              try ledger.entry(BenchKeys.key(0, bytes: keyBytes))?.status == .done,
              try ledger.entry(BenchKeys.key(entries - 1, bytes: keyBytes))?.receipt == receipt
        else {
            throw BenchError("the opened ledger holds \(ledger.entryCount) entries, expected \(entries) done")
        }
    }

    private static func segmentCount(_ directory: String) throws -> Int {
        try PosixStorage().listDirectory(directory).filter { LedgerFileNames.parseSegment($0) != nil }.count
    }

    /// Drops the cached pages of every segment and snapshot file in `directory`.
    static func dropPageCache(_ directory: String) throws {
        for name in try PosixStorage().listDirectory(directory)
        where LedgerFileNames.parseSegment(name) != nil || LedgerFileNames.parseSnapshot(name) != nil {
            let fd = open(directory + "/" + name, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
            close(fd)
        }
    }
}

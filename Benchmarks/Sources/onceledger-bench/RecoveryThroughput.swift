import Glibc
import OnceLedgerFormat
import OnceLedgerLog

/// Recovery speed: builds a ledger of `records` records (through `LogWriter`, in
/// full commit batches, so building is quick), then times `RecoveryScanner.scan`
/// and `LogEngine.open` over it with a cold page cache (the segment files'
/// pages dropped with `posix_fadvise(DONTNEED)`; on a virtual disk the host may
/// still cache them) and a warm one. Blocking: call it on a dedicated thread.
enum RecoveryThroughput {
    static func run(directory: String, configuration: LogConfiguration, records: Int, bodyBytes: Int) throws
        -> BenchResults.Recovery
    {
        let storage = PosixStorage()
        let buildClock = MonotonicClock()
        try build(directory: directory, storage: storage, configuration: configuration, records: records,
                  bodyBytes: bodyBytes)
        let buildSeconds = buildClock.elapsedSeconds

        let recordBytes = UInt64(records) * UInt64(RecordFrame.frameBytes(bodyBytes: bodyBytes))
        var scans: [BenchResults.Scan] = []
        var opens: [BenchResults.Scan] = []
        var segments = 0
        var segmentBytes: UInt64 = 0
        for cache in ["cold", "warm"] {
            if cache == "cold" { try dropPageCache(directory) }
            var seen = 0
            let clock = MonotonicClock()
            let report = try RecoveryScanner.scan(storage: storage, directory: directory, onRecord: { _ in seen += 1 })
            let seconds = clock.elapsedSeconds
            try check(report, records: records, seen: seen)
            segments = report.segments.count
            segmentBytes = report.bytesScanned
            scans.append(.init(cache: cache, records: report.recordCount, segmentBytes: report.bytesScanned,
                               recordBytes: recordBytes, seconds: seconds))
        }
        for cache in ["cold", "warm"] {
            if cache == "cold" { try dropPageCache(directory) }
            let clock = MonotonicClock()
            let engine = try LogEngine.open(directory: directory, storage: storage, configuration: configuration,
                                            createIfMissing: false)
            let seconds = clock.elapsedSeconds
            try check(engine.recovery, records: records, seen: engine.recovery.recordCount)
            opens.append(.init(cache: cache, records: engine.recovery.recordCount,
                               segmentBytes: engine.recovery.bytesScanned, recordBytes: recordBytes, seconds: seconds))
            try engine.close()
        }
        return BenchResults.Recovery(
            records: records, recordBodyBytes: bodyBytes,
            recordBytes: recordBytes, segments: segments,
            segmentBytes: segmentBytes,
            buildSeconds: buildSeconds, scans: scans, opens: opens)
    }

    /// `records` opaque records of `bodyBytes` each, in commit batches of up to 1024
    /// records, then a clean close (which adds one checkpoint).
    static func build(directory: String, storage: any Storage, configuration: LogConfiguration, records: Int,
                      bodyBytes: Int) throws
    {
        let (writer, lock, _) = try LogWriter.recover(directory: directory, storage: storage,
                                                      configuration: configuration)
        defer { lock.unlock() }
        var remaining = records
        var batch: [LogRecord] = []
        var serial: UInt64 = 0
        // Each batch is one pwrite and one fdatasync; 1024 records per batch keep the
        // syncs few while staying within the configured batch bounds.
        let perBatch = max(1, min(1024, configuration.batchRecordsMax,
                                  configuration.batchBytesMax / RecordFrame.frameBytes(bodyBytes: bodyBytes)))
        while remaining > 0 {
            batch.removeAll(keepingCapacity: true)
            for _ in 0..<min(perBatch, remaining) {
                serial += 1
                batch.append(LogRecord(kind: .opaque, body: body(bytes: bodyBytes, serial: serial)))
            }
            try writer.commit(batch)
            remaining -= batch.count
        }
        writer.close(timeMilliseconds: LogEngine.systemMilliseconds())
    }

    /// A body that is not all zeros and differs per record.
    static func body(bytes: Int, serial: UInt64) -> [UInt8] {
        var result = [UInt8](repeating: 0x5A, count: bytes)
        var value = serial
        for index in 0..<min(8, bytes) {
            result[index] = UInt8(truncatingIfNeeded: value)
            value >>= 8
        }
        return result
    }

    private static func check(_ report: RecoveryReport, records: Int, seen: Int) throws {
        // The clean close added one checkpoint record, and every segment but the last ends
        // with a seal record.
        let expected = records + 1 + max(0, report.segments.count - 1)
        guard report.error == nil, report.row.action == .open, report.recordCount == expected, seen == expected
        else {
            throw BenchError("recovery of the benchmark ledger found \(report.row.label) with \(report.recordCount) records (expected \(expected))")
        }
    }

    /// Asks the kernel to drop the cached pages of every file in `directory`
    /// (they are clean: everything was synced).
    static func dropPageCache(_ directory: String) throws {
        for name in try PosixStorage().listDirectory(directory) where name.hasSuffix(".seg") {
            let fd = open(directory + "/" + name, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
            close(fd)
        }
    }
}

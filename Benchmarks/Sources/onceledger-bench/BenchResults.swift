@_spi(Benchmarks) import OnceLedgerLog

/// Everything one `onceledger-bench` run measured; printed as a table or, with
/// `--json`, encoded as one JSON object (field names are the JSON keys).
struct BenchResults: Codable, Sendable {
    struct Setup: Codable, Sendable {
        var date: String
        var processors: Int
        var disk: DiskDescription
        /// Total seconds of each rate measurement, split evenly over `rounds`.
        var secondsPerMeasurement: Double
        var rounds: Int
        var recordBodyBytes: Int
        var recordFrameBytes: Int
        var appenders: Int
        var segmentBytes: UInt64
        var sqliteWriters: String
    }

    /// Operations completed in a timed window.
    struct Rate: Codable, Sendable {
        var operations: Int
        var seconds: Double
        var perSecond: Double

        init(operations: Int, seconds: Double) {
            self.operations = operations
            self.seconds = seconds
            self.perSecond = seconds > 0 ? Double(operations) / seconds : 0
        }

        /// All rounds together: total operations over total time.
        static func total(_ rates: [Rate]) -> Rate {
            Rate(operations: rates.reduce(0) { $0 + $1.operations }, seconds: rates.reduce(0) { $0 + $1.seconds })
        }
    }

    struct EngineRate: Codable, Sendable {
        var rate: Rate
        var appenders: Int
        var batches: UInt64
        var records: UInt64
        var meanRecordsPerBatch: Double
        /// The I/O thread's time over the measured window (`LogEngine.BatchTimings`).
        var timings: LogEngine.BatchTimings

        static func total(_ rates: [EngineRate]) -> EngineRate {
            let batches = rates.reduce(0) { $0 + $1.batches }
            let records = rates.reduce(0) { $0 + $1.records }
            let timings = rates.reduce(LogEngine.BatchTimings()) { $0 + $1.timings }
            return EngineRate(rate: .total(rates.map(\.rate)), appenders: rates.first?.appenders ?? 0,
                              batches: batches, records: records,
                              meanRecordsPerBatch: batches > 0 ? Double(records) / Double(batches) : 0,
                              timings: timings)
        }
    }

    struct SQLiteRate: Codable, Sendable {
        var rate: Rate
        var writers: Int
        /// Inserts that failed with SQLITE_BUSY after the busy timeout and were retried.
        var busyRetries: Int

        static func total(_ rates: [SQLiteRate]) -> SQLiteRate {
            SQLiteRate(rate: .total(rates.map(\.rate)), writers: rates.first?.writers ?? 0,
                       busyRetries: rates.reduce(0) { $0 + $1.busyRetries })
        }
    }

    /// Rates/s of one round. The rate measurements run interleaved in rounds, so
    /// a disk whose speed drifts (shared or throttled virtual disks do) affects
    /// every row alike; ratios are the median of the per-round ratios.
    struct Round: Codable, Sendable {
        var rawLoop: Double
        /// Diagnostic: the raw loop with O_DIRECT block writes.
        var rawDirectLoop: Double
        var engine1: Double
        var engine1Blocking: Double
        /// Diagnostic: one appender whose task runs on a `SpinningExecutor`.
        var engine1Executor: Double
        var engine64: Double
        var sqlite1: Double
        var sqlite64: Double
        /// The exactly-once rows (nil with `--skip-ledger`); see `ExactlyOnce`.
        var once1: Double? = nil
        /// Diagnostic: one `once` caller whose task runs on `ledger.executor`.
        var once1Executor: Double? = nil
        var once64: Double? = nil
        var sqliteOnce1: Double? = nil
        var sqliteOnce64: Double? = nil
        /// The measurements in the order they ran in this round (`BenchCommand.roundOrder`).
        var order: [String] = []
    }

    /// One timed pass over a whole ledger directory.
    struct Scan: Codable, Sendable {
        var cache: String
        var records: Int
        var segmentBytes: UInt64
        var recordBytes: UInt64
        var seconds: Double
        /// Segment-file bytes (preallocated zeros included) per second.
        var megabytesPerSecond: Double
        /// Record-frame bytes per second: what the scanner actually decodes and checksums.
        var recordMegabytesPerSecond: Double
        var recordsPerSecond: Double

        init(cache: String, records: Int, segmentBytes: UInt64, recordBytes: UInt64, seconds: Double) {
            self.cache = cache
            self.records = records
            self.segmentBytes = segmentBytes
            self.recordBytes = recordBytes
            self.seconds = seconds
            self.megabytesPerSecond = seconds > 0 ? Double(segmentBytes) / 1e6 / seconds : 0
            self.recordMegabytesPerSecond = seconds > 0 ? Double(recordBytes) / 1e6 / seconds : 0
            self.recordsPerSecond = seconds > 0 ? Double(records) / seconds : 0
        }
    }

    struct Recovery: Codable, Sendable {
        var records: Int
        var recordBodyBytes: Int
        /// Frame bytes of the records (the rest of the segment files is zeros).
        var recordBytes: UInt64
        var segments: Int
        var segmentBytes: UInt64
        var buildSeconds: Double
        /// `RecoveryScanner.scan` over the directory.
        var scans: [Scan]
        /// `LogEngine.open` (lock, scan, decide, open the active segment).
        var opens: [Scan]
    }

    /// Medians over rounds of the per-round ratios.
    struct Ratios: Codable, Sendable {
        var engine1VersusRaw: Double
        /// Diagnostic: against the O_DIRECT raw loop.
        var engine1VersusRawDirect: Double
        var engine1ExecutorVersusRaw: Double
        var engine64VersusRaw: Double
        var engine64VersusSQLite64: Double
        var engine1VersusSQLite1: Double

        init(_ rounds: [Round]) {
            func median(_ ratio: (Round) -> Double) -> Double { BenchResults.median(rounds.map(ratio)) ?? 0 }
            func ratio(_ a: Double, _ b: Double) -> Double { b > 0 ? a / b : 0 }
            engine1VersusRaw = median { ratio($0.engine1, $0.rawLoop) }
            engine1VersusRawDirect = median { ratio($0.engine1, $0.rawDirectLoop) }
            engine1ExecutorVersusRaw = median { ratio($0.engine1Executor, $0.rawLoop) }
            engine64VersusRaw = median { ratio($0.engine64, $0.rawLoop) }
            engine64VersusSQLite64 = median { ratio($0.engine64, $0.sqlite64) }
            engine1VersusSQLite1 = median { ratio($0.engine1, $0.sqlite1) }
        }
    }

    /// The middle value (the mean of the two middle ones for an even count); nil for none.
    static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    struct Target: Codable, Sendable {
        var name: String
        var measured: Double
        var target: Double
        /// "atLeast" or "below".
        var comparison: String
        var unit: String
        var source: String
        var met: Bool
    }

    var setup: Setup
    var rawLoop: Rate
    /// Diagnostic: `RawSyncLoop(direct: true)`.
    var rawDirectLoop: Rate
    var engine1: EngineRate
    /// Diagnostic: one appender through the blocking `appendAndWait` on a plain thread.
    var engine1Blocking: EngineRate
    /// Diagnostic: one appender whose task runs on a `SpinningExecutor`.
    var engine1Executor: EngineRate
    var engine64: EngineRate
    var sqlite1: SQLiteRate
    var sqlite64: SQLiteRate
    var rounds: [Round]
    var ratios: Ratios
    var recovery: Recovery
    var openSmall: Recovery
    /// `Ledger.once` rates, memory per entry and ledger open time (nil with `--skip-ledger`).
    var exactlyOnce: ExactlyOnce?
    var targets: [Target]
    var totalSeconds: Double
}

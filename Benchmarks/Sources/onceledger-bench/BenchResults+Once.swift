/// The exactly-once layer's part of a `bench` run: `Ledger.once` against the raw
/// loop and against SQLite doing the same two-transaction work, the ledger's
/// memory per done entry, and the open time of a ledger of done entries.
extension BenchResults {
    struct ExactlyOnce: Codable, Sendable {
        /// `Ledger.once`, no-op effect, unique key per call, on the file backend.
        var once1: EngineRate
        /// Diagnostic: the same, the caller's task on `ledger.executor`.
        var once1Executor: EngineRate
        var once64: EngineRate
        /// SQLite: INSERT intent, COMMIT; UPDATE to done with the receipt, COMMIT.
        var sqliteOnce1: SQLiteRate
        var sqliteOnce64: SQLiteRate
        var receiptBytes: Int
        var sqliteDescription: String
        var ratios: OnceRatios
        var memory: [MemoryPerEntry]
        var open: LedgerOpen
    }

    /// Medians over rounds of the per-round ratios.
    struct OnceRatios: Codable, Sendable {
        /// once (1 caller) ÷ (raw loop ÷ 2): each `once` needs two syncs.
        var once1VersusHalfRaw: Double
        var once1ExecutorVersusHalfRaw: Double
        var once64VersusRaw: Double
        var once1VersusSQLiteOnce1: Double
        var once64VersusSQLiteOnce64: Double

        init(_ rounds: [Round]) {
            func median(_ ratio: (Round) -> Double?) -> Double { BenchResults.median(rounds.compactMap(ratio)) ?? 0 }
            func ratio(_ a: Double?, _ b: Double?) -> Double? {
                guard let a, let b, b > 0 else { return nil }
                return a / b
            }
            once1VersusHalfRaw = median { ratio($0.once1, $0.rawLoop / 2) }
            once1ExecutorVersusHalfRaw = median { ratio($0.once1Executor, $0.rawLoop / 2) }
            once64VersusRaw = median { ratio($0.once64, $0.rawLoop) }
            once1VersusSQLiteOnce1 = median { ratio($0.once1, $0.sqliteOnce1) }
            once64VersusSQLiteOnce64 = median { ratio($0.once64, $0.sqliteOnce64) }
        }
    }

    /// Heap and resident growth of one `Ledger` holding `entries` done entries.
    struct MemoryPerEntry: Codable, Sendable {
        var label: String
        var entries: Int
        var keyBytes: Int
        var receiptBytes: Int
        /// Growth of malloc'd bytes in use (see `HeapUsage`), nil if unavailable.
        var heapBytes: Int?
        /// Growth of the resident set (`/proc/self/statm`).
        var residentBytes: Int?
        var heapBytesPerEntry: Double?
        var residentBytesPerEntry: Double?
        /// `heapBytesPerEntry − keyBytes`: what target T3 bounds ("< 128 bytes plus the key").
        var heapBytesPerEntryLessKey: Double?
        var seconds: Double
        /// CPU time of the replaying thread (the ledger's state is built on it).
        var cpuSeconds: Double
    }

    struct Timing: Codable, Sendable {
        var cache: String
        /// The median of `samples` (see `LedgerOpenTime.opensPerKind`).
        var seconds: Double
        /// CPU time of the opening thread (open is single-threaded), in the median open.
        var cpuSeconds: Double
        /// Every open's time, fastest first.
        var samples: [Double] = []
    }

    /// `Ledger.open` of a directory of `entries` done entries (intent + completion
    /// records each), from segments, then after `ledger.compact()` from the snapshot.
    struct LedgerOpen: Codable, Sendable {
        var entries: Int
        var keyBytes: Int
        var receiptBytes: Int
        var records: Int
        var segments: Int
        var recordBytes: UInt64
        var buildSeconds: Double
        var fromSegments: [Timing]
        var compactSeconds: Double
        var snapshotBytes: UInt64
        var segmentsAfterCompaction: Int
        /// Snapshot load plus a scan of the segments compaction keeps (the active
        /// one is never deleted, so its covered records are read again and skipped).
        var fromSnapshot: [Timing]
    }
}

// MARK: Targets and table

extension BenchResults.ExactlyOnce {
    func targets() -> [BenchResults.Target] {
        func target(_ name: String, _ measured: Double, _ comparison: String, _ goal: Double, _ unit: String,
                    _ source: String) -> BenchResults.Target {
            BenchResults.Target(name: name, measured: measured, target: goal, comparison: comparison, unit: unit,
                                source: source, met: comparison == "below" ? measured < goal : measured >= goal)
        }
        var targets = [
            target("once, 1 caller ÷ (raw loop ÷ 2)", ratios.once1VersusHalfRaw, "atLeast", 0.9, "×", "T1"),
            target("once, \(once64.appenders) callers ÷ SQLite once, \(sqliteOnce64.writers) connections",
                   ratios.once64VersusSQLiteOnce64, "atLeast", 20, "×", "T2"),
        ]
        for row in memory {
            if let lessKey = row.heapBytesPerEntryLessKey {
                targets.append(target("memory per done entry − key, \(row.label)", lessKey, "below", 128, "B", "T3"))
            }
        }
        let count = Format.millions(Double(open.entries))
        for timing in open.fromSegments {
            targets.append(target("open \(count) done entries from segments, \(timing.cache)", timing.seconds,
                                  "below", 1, "s", "T4"))
        }
        for timing in open.fromSnapshot {
            targets.append(target("open \(count) done entries from snapshot, \(timing.cache)", timing.seconds,
                                  "below", 1, "s", "T5"))
        }
        for (snapshot, segments) in zip(open.fromSnapshot, open.fromSegments) where segments.seconds > 0 {
            targets.append(target("open from snapshot ÷ from segments, \(snapshot.cache)",
                                  snapshot.seconds / segments.seconds, "below", 1, "×", "T5"))
        }
        return targets
    }

    func render(rounds: [BenchResults.Round], rawLoop: BenchResults.Rate) -> [String] {
        var out: [String] = []
        func perRound(_ value: (BenchResults.Round) -> Double?) -> String {
            let values = rounds.compactMap(value)
            return "\(Format.rate(values.min() ?? 0))-\(Format.rate(values.max() ?? 0))"
        }
        func medianRatio(_ value: (BenchResults.Round) -> Double?) -> String {
            let values = rounds.compactMap { round in
                value(round).flatMap { round.rawLoop > 0 ? $0 / round.rawLoop : nil }
            }
            return BenchResults.median(values).map(Format.ratio) ?? "-"
        }
        var rates = TextTable(["exactly once (no-op effect, fresh key)", "once/s", "× raw", "rounds min-max", "notes"],
                              leftAligned: [4])
        rates.add(["raw loop ÷ 2 (each once needs two syncs)", Format.rate(rawLoop.perSecond / 2), "0.50×",
                   perRound { $0.rawLoop / 2 }, ""])
        rates.add(["Ledger.once, 1 caller", Format.rate(once1.rate.perSecond), medianRatio(\.once1),
                   perRound(\.once1), "\(Format.fixed(once1.meanRecordsPerBatch, 2)) records/batch"])
        rates.add(["Ledger.once, 1 caller on ledger.executor (diagnostic)", Format.rate(once1Executor.rate.perSecond),
                   medianRatio(\.once1Executor), perRound(\.once1Executor), "no thread wake-up per commit"])
        rates.add(["Ledger.once, \(once64.appenders) callers", Format.rate(once64.rate.perSecond),
                   medianRatio(\.once64), perRound(\.once64),
                   "\(Format.fixed(once64.meanRecordsPerBatch, 1)) records/batch"])
        rates.add(["SQLite once, 1 connection", Format.rate(sqliteOnce1.rate.perSecond), medianRatio(\.sqliteOnce1),
                   perRound(\.sqliteOnce1), "2 transactions per once"])
        rates.add(["SQLite once, \(sqliteOnce64.writers) connections", Format.rate(sqliteOnce64.rate.perSecond),
                   medianRatio(\.sqliteOnce64), perRound(\.sqliteOnce64),
                   "\(sqliteOnce64.busyRetries) SQLITE_BUSY retries"])
        out.append(rates.render())
        out.append("Ledger.once: file backend, keys like r3c17-1234, \(receiptBytes)-byte receipt; SQLite once: \(sqliteDescription)")
        out.append("once ÷ (raw ÷ 2): 1 caller \(Format.ratio(ratios.once1VersusHalfRaw)), on ledger.executor \(Format.ratio(ratios.once1ExecutorVersusHalfRaw)); once ÷ SQLite once: 1 caller \(Format.ratio(ratios.once1VersusSQLiteOnce1)), \(once64.appenders) callers \(Format.ratio(ratios.once64VersusSQLiteOnce64))")
        out.append("")

        var memoryTable = TextTable(["memory per done entry", "entries", "heap Δ", "heap B/entry", "− key",
                                     "RSS B/entry", "replay", "cpu"])
        func bytes(_ value: Double?) -> String { value.map { Format.fixed($0, 1) } ?? "n/a" }
        for row in memory {
            memoryTable.add(["\(row.label), \(row.keyBytes) B", Format.grouped(row.entries),
                             row.heapBytes.map { Format.megabytes(UInt64(max(0, $0))) } ?? "n/a",
                             bytes(row.heapBytesPerEntry), bytes(row.heapBytesPerEntryLessKey),
                             bytes(row.residentBytesPerEntry), Format.seconds(row.seconds),
                             Format.seconds(row.cpuSeconds)])
        }
        out.append(memoryTable.render())
        out.append("heap = malloc'd bytes in use, chunk headers included (glibc malloc_info totals = mallinfo2 uordblks+hblkhd), Δ around LogStore(log:)")
        out.append("replaying each key's intent + completion record (\(receiptBytes)-byte receipt); RSS = /proc/self/statm resident pages, after malloc_trim(0)")
        out.append("")

        var openTable = TextTable(["open \(Format.millions(Double(open.entries))) done entries (\(open.keyBytes)-byte keys)", "time", "cpu", "entries/s"])
        for timing in open.fromSegments {
            openTable.add(["Ledger.open from segments, \(timing.cache) cache", Format.seconds(timing.seconds),
                           Format.seconds(timing.cpuSeconds), Format.millions(Double(open.entries) / timing.seconds)])
        }
        openTable.add(["ledger.compact() (writes the snapshot)", Format.seconds(open.compactSeconds), "",
                       Format.millions(Double(open.entries) / open.compactSeconds)])
        for timing in open.fromSnapshot {
            openTable.add(["Ledger.open from snapshot, \(timing.cache) cache", Format.seconds(timing.seconds),
                           Format.seconds(timing.cpuSeconds), Format.millions(Double(open.entries) / timing.seconds)])
        }
        out.append(openTable.render())
        out.append("\(Format.grouped(open.records)) records (intent + completion per key, 1 checkpoint): \(Format.megabytes(open.recordBytes)) of frames in \(open.segments) segment file(s); built in \(Format.seconds(open.buildSeconds))")
        out.append("time and cpu: the median of \(open.fromSegments.first?.samples.count ?? 1) opens each (all: segments cold \(open.fromSegments.first.map { $0.samples.map(Format.seconds).joined(separator: ", ") } ?? ""); snapshot cold \(open.fromSnapshot.first.map { $0.samples.map(Format.seconds).joined(separator: ", ") } ?? ""))")
        out.append("after compaction: snapshot of \(Format.megabytes(open.snapshotBytes)) + \(open.segmentsAfterCompaction) segment file(s) (the active one is kept; its covered records are scanned and skipped)")
        return out
    }
}

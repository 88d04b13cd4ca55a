import Foundation
import Glibc
import OnceLedger
import OnceLedgerFormat
@_spi(Benchmarks) import OnceLedgerLog

/// Targets T14–T18 (`Benchmarks/README.md`): the memo (`Ledger.memo`).
///
/// - T14/T15: durable `Memo.put` calls per second (a `valueBytes` value, a fresh name per
///   call) by 1 and by `callers` tasks, interleaved in rounds with the raw
///   pwrite+fdatasync loop; the ratio of each row is the median over the rounds of
///   (row rate / raw rate in the same round).
/// - T16: gets of 4 KiB values already stored, one task, warm page cache: `Memo.bytes`
///   (raw bytes) and `Memo.get` of a `Codable` struct holding a 4 KiB JSON string, each for
///   `seconds` (or a fixed count of `hits`: instruction counts under callgrind).
/// - T17: open of a ledger holding `openEntries` memo values (on disk): heap growth per
///   entry less its key (run + step + name bytes), time; from the segments, then after
///   a compaction from the snapshot.
/// - T18: `sweepMemo` of `sweepRuns` ended runs (one put and `finishRun` each). The
///   ledger's clock is a fixed function (`fixedNow`), and the sweep passes a `now` one
///   hour later, so every run is past its one-minute window: no wall clock involved.
enum MemoBench {
    /// The rows `--memo-rows` picks.
    enum Row: String, CaseIterable {
        case put, hit, open, sweep
    }

    /// T16's `Codable` value: about 4 KiB of JSON.
    struct Answer: Codable, Equatable {
        var model: String
        var text: String
    }

    struct OpenRow {
        var open: String
        var entries: Int
        var seconds: Double
        var heapPerEntryLessKey: Double?
        var residentBytes: Int?
    }

    struct Result {
        var rounds = 0
        var raw: [Double] = []
        var put1: [Double] = []
        var putMany: [Double] = []
        /// Per round, of the 1-caller and the many-caller put rows: process CPU time (every
        /// thread, user + system) per put in microseconds, and records per commit batch.
        var put1Cost: [RowCost] = []
        var putManyCost: [RowCost] = []
        var callers = 0
        var valueBytes = 0
        var rows: Set<Row> = []
        var hitRate = 0.0
        var hits = 0
        var codableHitRate = 0.0
        var codableHits = 0
        var openRows: [OpenRow] = []
        var keyBytes = 0
        var diskBytes: UInt64 = 0
        var sweepRuns = 0
        var sweepEntries = 0
        var sweepBuildSeconds = 0.0
        var sweepSeconds = 0.0
    }

    /// The ledger clock of the open and sweep ledgers (milliseconds).
    static let fixedNow: UInt64 = 1_000_000_000
    static let hitValueBytes = 4096
    static let entriesPerRun = 1000

    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2]
            : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    static func openLedger(_ directory: String, create: Bool,
                           configuration: LogConfiguration = LogConfiguration()) throws -> Ledger {
        let clock: @Sendable () -> UInt64 = { MemoBench.fixedNow }
        let store = try FileStore(directory: directory, configuration: configuration, createIfMissing: create,
                                  clock: clock)
        return Ledger(store: store, clock: clock)
    }

    /// `count` puts of `value` by `callers` tasks into `ledger`: run `r<i / entriesPerRun>`,
    /// step "s", name `n<i>`.
    static func fill(_ ledger: Ledger, count: Int, callers: Int, value: [UInt8]) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for caller in 0..<callers {
                group.addTask {
                    var memo: Memo?
                    var index = caller
                    while index < count {
                        let run = "r\(index / entriesPerRun)"
                        if memo?.run.run != run { memo = try await ledger.memo(run: run, step: "s") }
                        try await memo!.put("n\(index)", bytes: value)
                        index += callers
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    static func run(root: String, rows: Set<Row> = Set(Row.allCases), rounds: Int, seconds: Double, callers: Int,
                    valueBytes: Int, hits: Int? = nil, openEntries: Int, sweepRuns: Int,
                    progress: Progress) async throws -> Result
    {
        var result = Result()
        result.rows = rows
        result.rounds = rounds
        result.callers = callers
        result.valueBytes = valueBytes
        func scratch(_ name: String) throws -> String {
            let path = root + "/" + name
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
            return path
        }
        let value = (0..<valueBytes).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 17) }

        // T14/T15: puts interleaved with the raw loop.
        if rows.contains(.put) {
        let frameBytes = RecordFrame.frameBytes(bodyBytes: valueBytes)
        let raw = try await BlockingThread.run { [directory = try scratch("memo-raw")] in
            try RawSyncLoop(directory: directory, recordBytes: frameBytes)
        }
        let single = try await OnceThroughput.open(directory: try scratch("memo-put-1"),
                                                   configuration: LogConfiguration(), receipt: [])
        let many = try await OnceThroughput.open(directory: try scratch("memo-put-\(callers)"),
                                                 configuration: LogConfiguration(), receipt: [])
        func putRate(_ target: OnceThroughput, callers: Int, round: Int, slot: Double) async throws -> (Double, RowCost) {
            guard let engine = target.store.engine else { throw BenchError("the memo bench ledger is not open") }
            let ledger = target.ledger
            let memo = try await ledger.memo(run: "put-round-\(round)", step: "s")
            let cpu = ValuesOnDisk.processCPUSeconds()
            let rate = try await EngineThroughput.measure(engine: engine, callers: callers, seconds: slot) {
                caller, serial in
                try await memo.put(serial.map { "c\(caller)-\($0)" } ?? "c\(caller)w", bytes: value)
            }
            return (rate.rate.perSecond, RowCost(rate, cpuSeconds: ValuesOnDisk.processCPUSeconds() - cpu, callers: callers))
        }
        let rates = try await interleave(
            rounds: rounds, seconds: seconds, raw: raw, frameBytes: frameBytes, callers: callers, progress: progress,
            labels: ("memo", "memo put, 1 caller", "memo put, \(callers) callers")
        ) { callers, round, slot in
            try await putRate(callers == 1 ? single : many, callers: callers, round: round, slot: slot)
        }
        (result.raw, result.put1, result.put1Cost, result.putMany, result.putManyCost) =
            (rates.raw, rates.one, rates.oneCost, rates.many, rates.manyCost)
        try await single.close()
        try await many.close()
        }

        // T16: cache hits of 4 KiB values, one task, warm.
        if rows.contains(.hit) {
            let directory = try scratch("memo-hit")
            let ledger = try await BlockingThread.run { try openLedger(directory, create: true) }
            let big = (0..<hitValueBytes).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
            let memo = try await ledger.memo(run: "hit", step: "s")
            let names = (0..<1024).map { "n\($0)" }
            progress.say("memo hits: storing \(names.count) values of \(hitValueBytes) B")
            try await withThrowingTaskGroup(of: Void.self) { group in
                for chunk in 0..<64 {
                    group.addTask {
                        for index in stride(from: chunk, to: names.count, by: 64) {
                            try await memo.put(names[index], bytes: big)
                        }
                    }
                }
                try await group.waitForAll()
            }
            let answer = Answer(model: "bench", text: String(repeating: "x", count: hitValueBytes - 32))
            let codable = try await ledger.memo(run: "hit", step: "codable")
            for name in names { try await codable.put(name, answer) }
            for name in names {
                guard try await memo.bytes(name) == big, try await codable.get(name, as: Answer.self) == answer else {
                    throw BenchError("memo value \(name) did not read back as written")
                }
            }
            /// Gets of every name in turn for `seconds` (or `hits` gets): how many, and the rate.
            func measure(_ label: String, _ get: (String) async throws -> Bool) async throws -> (Int, Double) {
                progress.say(hits.map { "memo hits: \(label), \(Format.grouped($0)) gets" }
                    ?? "memo hits: \(label) for \(Format.fixed(seconds, 1)) s")
                let clock = MonotonicClock()
                var done = 0
                while hits.map({ done < $0 }) ?? (clock.elapsedSeconds < seconds) {
                    for name in names where hits.map({ done < $0 }) ?? true {
                        guard try await get(name) else { throw BenchError("memo value \(name) was lost") }
                        done += 1
                    }
                }
                return (done, Double(done) / clock.elapsedSeconds)
            }
            (result.hits, result.hitRate) = try await measure("bytes") { name in
                try await memo.bytes(name)?.count == hitValueBytes
            }
            // Both rows check what they got the same way, by its size: comparing the 4 KiB
            // text with the expected one would time a memcmp of the bench's own.
            // The warm-up above compared every whole value once.
            (result.codableHits, result.codableHitRate) = try await measure("Codable get") { name in
                try await codable.get(name, as: Answer.self)?.text.utf8.count == answer.text.utf8.count
            }
            try await BlockingThread.run { try ledger.close() }
            try FileManager.default.removeItem(atPath: directory)
        }

        // T17: open of `openEntries` memo values.
        if rows.contains(.open) {
            let directory = try scratch("memo-open")
            let lastRun = "r\((openEntries - 1) / entriesPerRun)"
            result.keyBytes = lastRun.utf8.count + 1 + "n\(openEntries - 1)".utf8.count
            progress.say("memo open: putting \(Format.grouped(openEntries)) values of \(valueBytes) B")
            let building = try await BlockingThread.run { try openLedger(directory, create: true) }
            try await fill(building, count: openEntries, callers: 64, value: value)
            try await BlockingThread.run { try building.close() }
            func measuredOpen(_ label: String) async throws -> OpenRow {
                let (ledger, elapsed, before, after, resident) = try await BlockingThread.run(name: "memo-open") {
                    HeapUsage.trim()
                    let before = HeapUsage.heapInUseBytes()
                    let clock = MonotonicClock()
                    let ledger = try openLedger(directory, create: false)
                    let elapsed = clock.elapsedSeconds
                    let after = HeapUsage.heapInUseBytes()
                    HeapUsage.trim()
                    return (ledger, elapsed, before, after, HeapUsage.residentBytes())
                }
                let memo = try await ledger.memo(run: lastRun, step: "s")
                guard try await memo.bytes("n\(openEntries - 1)") == value else {
                    throw BenchError("the memo open ledger lost its last value")
                }
                try await BlockingThread.run { try ledger.close() }
                let perEntry = before.flatMap { b in
                    after.map { Double($0 - b) / Double(openEntries) - Double(result.keyBytes) }
                }
                return OpenRow(open: label, entries: openEntries, seconds: elapsed, heapPerEntryLessKey: perEntry,
                               residentBytes: resident)
            }
            result.openRows.append(try await measuredOpen("segments, warm"))
            progress.say("memo open: compacting")
            let compacting = try await BlockingThread.run { try openLedger(directory, create: false) }
            try await compacting.compact()
            try await BlockingThread.run { try compacting.close() }
            result.openRows.append(try await measuredOpen("snapshot, warm"))
            result.diskBytes = try ValuesOnDisk.directoryBytes(directory)
            try FileManager.default.removeItem(atPath: directory)
        }

        // T18: sweep of `sweepRuns` ended runs.
        if rows.contains(.sweep) {
            let directory = try scratch("memo-sweep")
            let ledger = try await BlockingThread.run { try openLedger(directory, create: true) }
            progress.say("memo sweep: \(Format.grouped(sweepRuns)) runs with one put and finishRun each")
            let buildClock = MonotonicClock()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for caller in 0..<64 {
                    group.addTask {
                        for index in stride(from: caller, to: sweepRuns, by: 64) {
                            let memo = try await ledger.memo(run: "sweep-\(index)", step: "s")
                            try await memo.put("n", bytes: value)
                            try await ledger.finishRun("sweep-\(index)", status: .succeeded)
                        }
                    }
                }
                try await group.waitForAll()
            }
            result.sweepBuildSeconds = buildClock.elapsedSeconds
            progress.say("memo sweep: sweeping")
            let clock = MonotonicClock()
            let swept = try await ledger.sweepMemo(now: fixedNow + 3_600_000, retention: MemoRetention(.seconds(60)))
            result.sweepSeconds = clock.elapsedSeconds
            result.sweepRuns = swept.runs.values.reduce(0) { $0 + $1.count }
            result.sweepEntries = swept.entries
            guard result.sweepRuns == sweepRuns, swept.entries == sweepRuns else {
                throw BenchError("the sweep removed \(result.sweepRuns) runs and \(swept.entries) values, not \(sweepRuns)")
            }
            try await BlockingThread.run { try ledger.close() }
            try FileManager.default.removeItem(atPath: directory)
        }
        return result
    }

    /// What one round of a rate row cost: process CPU time (all threads, user + system, so the
    /// raw loop's thread idles meanwhile) per operation, and records per commit batch. Read
    /// beside the rate: with a core shared, CPU per operation moves less with the load.
    /// The rates of the raw loop and of a row at 1 and at many callers, per round.
    struct Interleaved {
        var raw: [Double] = []
        var one: [Double] = []
        var oneCost: [RowCost] = []
        var many: [Double] = []
        var manyCost: [RowCost] = []
    }

    /// Runs `rounds` rounds of the raw loop, `rate` with 1 caller and `rate` with `callers`,
    /// each for `seconds / rounds`, rotated so none always follows the same one. `labels`: the
    /// progress prefix, and the names of the 1-caller and the many-caller rows.
    static func interleave(
        rounds: Int, seconds: Double, raw: RawSyncLoop, frameBytes: Int, callers: Int, progress: Progress,
        labels: (prefix: String, one: String, many: String),
        rate: (_ callers: Int, _ round: Int, _ slot: Double) async throws -> (Double, RowCost)
    ) async throws -> Interleaved {
        var result = Interleaved()
        let slot = seconds / Double(rounds)
        for round in 1...rounds {
            for row in (0..<3).map({ ($0 + round) % 3 }) {
                let say = { (what: String) in progress.say("\(labels.prefix) round \(round)/\(rounds): \(what)") }
                switch row {
                case 0:
                    say("raw pwrite(\(frameBytes) B)+fdatasync loop")
                    result.raw.append(try await BlockingThread.run(name: "raw-sync") { try raw.run(seconds: slot) }.perSecond)
                case 1:
                    say(labels.one)
                    let (perSecond, cost) = try await rate(1, round, slot)
                    result.one.append(perSecond)
                    result.oneCost.append(cost)
                default:
                    say(labels.many)
                    let (perSecond, cost) = try await rate(callers, round, slot)
                    result.many.append(perSecond)
                    result.manyCost.append(cost)
                }
            }
        }
        return result
    }

    struct RowCost {
        var cpuMicrosecondsPerOperation: Double
        var recordsPerBatch: Double
        /// Per batch, from the I/O thread's clock (`LogEngine.batchTimings`): the whole batch
        /// period (the window over the batches), and the write+sync, onDurable and resume in it.
        var batchMicroseconds: Double
        var commitMicroseconds: Double
        var onDurableMicroseconds: Double
        var resumeMicroseconds: Double

        init(_ rate: BenchResults.EngineRate, cpuSeconds: Double, callers: Int) {
            // Beside the counted calls: the warm-up's one per caller, and each caller's last,
            // which ended after the window.
            let operations = Double(rate.rate.operations + 2 * callers)
            cpuMicrosecondsPerOperation = operations > 0 ? cpuSeconds * 1e6 / operations : 0
            recordsPerBatch = rate.meanRecordsPerBatch
            let timings = rate.timings
            let batches = Double(max(timings.batches, 1))
            batchMicroseconds = rate.rate.seconds * 1e6 / batches
            commitMicroseconds = Double(timings.commitNanoseconds) / 1e3 / batches
            onDurableMicroseconds = Double(timings.onDurableNanoseconds) / 1e3 / batches
            resumeMicroseconds = Double(timings.resumeNanoseconds) / 1e3 / batches
        }

        /// "period = write+sync + onDurable + resume µs" of a batch, for the per-round tables.
        var batchBreakdown: String {
            "\(Format.fixed(batchMicroseconds, 0)) = \(Format.fixed(commitMicroseconds, 0)) + \(Format.fixed(onDurableMicroseconds, 0)) + \(Format.fixed(resumeMicroseconds, 0))"
        }
    }

    static func render(_ result: Result) -> String {
        let ratio1 = median(zip(result.put1, result.raw).map { $0 / $1 })
        let ratioMany = median(zip(result.putMany, result.raw).map { $0 / $1 })
        var rates = TextTable(["memo (T14–T16)", "median rate/s", "median ratio to raw", "target", "met"])
        if result.rows.contains(.put) {
            rates.add(["raw pwrite+fdatasync loop", Format.rate(median(result.raw)), "1.00", "", ""])
            rates.add(["T14 put \(result.valueBytes) B, 1 caller", Format.rate(median(result.put1)),
                       Format.fixed(ratio1, 2), "≥ 0.9 × raw", ratio1 >= 0.9 ? "yes" : "NO"])
            rates.add(["T15 put \(result.valueBytes) B, \(result.callers) callers", Format.rate(median(result.putMany)),
                       Format.fixed(ratioMany, 2), "≥ 20 × raw", ratioMany >= 20 ? "yes" : "NO"])
        }
        if result.rows.contains(.hit) {
            rates.add(["T16 get 4 KiB, 1 task, warm", Format.rate(result.hitRate), "", "≥ 500 k/s",
                       result.hitRate >= 500_000 ? "yes" : "NO"])
            rates.add(["T16 get 4 KiB Codable, 1 task, warm", Format.rate(result.codableHitRate), "", "(≥ 500 k/s)",
                       result.codableHitRate >= 500_000 ? "yes" : "NO"])
        }
        var perRound = TextTable(["round", "raw/s", "put 1/s", "CPU µs/put", "put \(result.callers)/s", "CPU µs/put",
                                  "records/batch", "batch µs = write+sync + onDurable + resume"])
        for index in result.raw.indices {
            perRound.add(["\(index + 1)", Format.rate(result.raw[index]), Format.rate(result.put1[index]),
                          Format.fixed(result.put1Cost[index].cpuMicrosecondsPerOperation, 1),
                          Format.rate(result.putMany[index]),
                          Format.fixed(result.putManyCost[index].cpuMicrosecondsPerOperation, 1),
                          Format.fixed(result.putManyCost[index].recordsPerBatch, 1),
                          result.putManyCost[index].batchBreakdown])
        }
        var open = TextTable(["T17 open from", "entries", "time", "heap/entry − key", "RSS after open", "target"])
        for row in result.openRows {
            open.add([row.open, Format.grouped(row.entries), Format.seconds(row.seconds),
                      row.heapPerEntryLessKey.map { Format.fixed($0, 1) + " B" } ?? "n/a",
                      row.residentBytes.map { Format.megabytes(UInt64($0)) } ?? "n/a",
                      "< 1 s per 1 M, < 128 B"])
        }
        let sweepMet = result.sweepSeconds * 100_000 / Double(max(result.sweepRuns, 1)) < 2 ? "yes" : "NO"
        var lines = ["Memo (T14–T18)"]
        if result.rows.contains(.put) || result.rows.contains(.hit) { lines.append(rates.render()) }
        if result.rows.contains(.put) { lines.append(perRound.render()) }
        if result.rows.contains(.hit) {
            lines.append("(T16 gets: \(Format.grouped(result.hits)) bytes, \(Format.grouped(result.codableHits)) Codable)")
        }
        if result.rows.contains(.open) {
            lines.append(open.render())
            lines.append("(key = \(result.keyBytes) B of run + step + name; ledger on disk after compaction \(Format.megabytes(result.diskBytes)))")
        }
        if result.rows.contains(.sweep) {
            lines.append("""
                T18 sweep of \(Format.grouped(result.sweepRuns)) ended runs (\(Format.grouped(result.sweepEntries)) values): \
                \(Format.seconds(result.sweepSeconds)) (target < 2 s per 100 k; met, scaled to 100 k: \(sweepMet)); \
                building them took \(Format.seconds(result.sweepBuildSeconds))
                """)
        }
        return lines.joined(separator: "\n")
    }
}

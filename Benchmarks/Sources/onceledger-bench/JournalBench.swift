import Foundation
import Glibc
import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog

/// Targets J1–J4 (`Benchmarks/README.md`): the replay journal (`Ledger.journal`).
///
/// - J1/J2: recorded steps per second (`Journal.step` with a small `Codable` output, each a
///   fresh position) by 1 run and by `callers` runs at once (one task and one journal each),
///   interleaved in rounds with the raw pwrite+fdatasync loop of the same record size; the
///   ratio of each row is the median over the rounds of (row rate / raw rate in the round).
/// - J3: replay of a `replaySteps`-step run from a warm page cache: a new `Journal` of the
///   same run on the open ledger returns every recorded output (no body runs); the time of
///   the whole replay, best of three.
/// - J4: open of a ledger holding `openRuns` runs of `stepsPerRun` recorded steps (memo
///   entries of the journal's step), from the segments and from a snapshot: time and heap per
///   position. The target is for 100 000 runs × 100 steps (10 M positions); a smaller count
///   is scaled linearly and says so.
enum JournalBench {
    struct OpenRow {
        var open: String
        var positions: Int
        var seconds: Double
        var heapPerPosition: Double?
    }

    struct Result {
        var rounds = 0
        var raw: [Double] = []
        var step1: [Double] = []
        var stepMany: [Double] = []
        /// Per round: process CPU per recorded step and records per batch (`MemoBench.RowCost`).
        var step1Cost: [MemoBench.RowCost] = []
        var stepManyCost: [MemoBench.RowCost] = []
        var callers = 0
        var replaySteps = 0
        var replaySeconds = 0.0
        var openRuns = 0
        var stepsPerRun = 0
        var openRows: [OpenRow] = []
        /// How far the resident set rose above where it was while the J4 ledger compacted.
        var compactionPeakBytes: Int?
        /// How long `compact()` of the J4 ledger took (appends wait that long).
        var compactionSeconds: Double?
        /// How long compacting it again took (every value then in the first snapshot).
        var recompactionSeconds: Double?
        /// One caller's journal steps beside that compaction, with the snapshot written on its
        /// own thread (the default) and then on the I/O thread.
        var besideBackground: CompactionBeside?
        var besideForeground: CompactionBeside?
        var rows = Set(Row.allCases)
    }

    static let output = "a recorded answer"
    static let limits = JournalLimits(entriesMax: 9_999_999_999, bytesMax: .max)

    /// The parts of the journal bench (`--journal-rows`).
    enum Row: String, CaseIterable {
        case steps, replay, open
    }

    /// `keptOpenLedger`: J4 uses the ledger in that directory (recording it there first if it
    /// holds none), measures only the open from its segments `openRepeats` times, and keeps it:
    /// the 10 M-position ledger takes minutes to record, an open takes seconds.
    static func run(root: String, rows: Set<Row> = Set(Row.allCases), rounds: Int, seconds: Double, callers: Int,
                    replaySteps: Int, openRuns: Int, stepsPerRun: Int, keptOpenLedger: String? = nil,
                    openRepeats: Int = 1, progress: Progress) async throws -> Result {
        var result = Result()
        result.rows = rows
        result.rounds = rounds
        result.callers = callers
        result.replaySteps = replaySteps
        result.openRuns = openRuns
        result.stepsPerRun = stepsPerRun
        func scratch(_ name: String) throws -> String {
            let path = root + "/" + name
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
            return path
        }

        // J1/J2: recorded steps interleaved with the raw loop of the same frame size.
        if rows.contains(.steps) {
            let entry = JournalEntry(kind: .step, position: 0, name: "s", output: Array("\"\(output)\"".utf8))
            let body = RecordBody.memoEntry(.init(namespace: "", run: "c0-round-1", generation: 1, step: "",
                                                  name: JournalEntry.positionName(0), inputDigest: RecordBody.noInputDigest,
                                                  timeMilliseconds: 0, value: entry.encode()))
            let frameBytes = RecordFrame.frameBytes(bodyBytes: body.encode().count)
            let raw = try await BlockingThread.run { [directory = try scratch("journal-raw")] in
                try RawSyncLoop(directory: directory, recordBytes: frameBytes)
            }
            let single = try await OnceThroughput.open(directory: try scratch("journal-1"), configuration: LogConfiguration(),
                                                       receipt: [])
            let many = try await OnceThroughput.open(directory: try scratch("journal-\(callers)"),
                                                     configuration: LogConfiguration(), receipt: [])
            func stepRate(_ target: OnceThroughput, callers: Int, round: Int, slot: Double) async throws
                -> (Double, MemoBench.RowCost)
            {
                guard let engine = target.store.engine else { throw BenchError("the journal bench ledger is not open") }
                var journals: [Journal] = []
                for caller in 0..<callers {
                    journals.append(try await target.ledger.journal(run: "c\(caller)-round-\(round)", limits: limits))
                }
                let cpu = ValuesOnDisk.processCPUSeconds()
                let rate = try await EngineThroughput.measure(engine: engine, callers: callers, seconds: slot) { [journals] caller, _ in
                    _ = try await journals[caller].step("s") { output }
                }
                return (rate.rate.perSecond,
                        MemoBench.RowCost(rate, cpuSeconds: ValuesOnDisk.processCPUSeconds() - cpu, callers: callers))
            }
            let rates = try await MemoBench.interleave(
                rounds: rounds, seconds: seconds, raw: raw, frameBytes: frameBytes, callers: callers, progress: progress,
                labels: ("journal", "steps, 1 run", "steps, \(callers) runs at once")
            ) { callers, round, slot in
                try await stepRate(callers == 1 ? single : many, callers: callers, round: round, slot: slot)
            }
            (result.raw, result.step1, result.step1Cost, result.stepMany, result.stepManyCost) =
                (rates.raw, rates.one, rates.oneCost, rates.many, rates.manyCost)
            try await single.close()
            try await many.close()
        }

        // J3: replay of one long run, warm.
        if rows.contains(.replay) {
            let directory = try scratch("journal-replay")
            let ledger = try await BlockingThread.run { try MemoBench.openLedger(directory, create: true) }
            progress.say("journal replay: recording \(Format.grouped(replaySteps)) steps")
            try await fill(ledger, runs: ["long"], steps: replaySteps)
            var best = Double.infinity
            for _ in 0..<3 {
                let journal = try await ledger.journal(run: "long", limits: limits)
                let clock = MonotonicClock()
                for _ in 0..<replaySteps {
                    _ = try await journal.step("s") { () -> String in throw BenchError("a replayed step ran its body") }
                }
                best = min(best, clock.elapsedSeconds)
            }
            result.replaySeconds = best
            try await BlockingThread.run { try ledger.close() }
            try FileManager.default.removeItem(atPath: directory)
        }

        // J4: open of many recorded runs.
        if rows.contains(.open) {
            let directory = try keptOpenLedger ?? scratch("journal-open")
            let recorded = keptOpenLedger != nil
                && ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).contains { $0.hasSuffix(".seg") }
            if recorded {
                progress.say("journal open: using the ledger in \(directory) (\(Format.grouped(openRuns)) runs × \(stepsPerRun) steps)")
            } else {
                let building = try await BlockingThread.run { try MemoBench.openLedger(directory, create: true) }
                progress.say("journal open: recording \(Format.grouped(openRuns)) runs × \(stepsPerRun) steps")
                try await fill(building, runs: (0..<openRuns).map { "run-\($0)" }, steps: stepsPerRun)
                try await BlockingThread.run { try building.close() }
            }
            func measuredOpen(_ label: String) async throws -> OpenRow {
                let (ledger, elapsed, before, after) = try await BlockingThread.run(name: "journal-open") {
                    HeapUsage.trim()
                    let before = HeapUsage.heapInUseBytes()
                    let clock = MonotonicClock()
                    let ledger = try MemoBench.openLedger(directory, create: false)
                    let elapsed = clock.elapsedSeconds
                    return (ledger, elapsed, before, HeapUsage.heapInUseBytes())
                }
                let records = try await ledger.journalRecords(run: "run-\(openRuns - 1)")
                guard records.count == stepsPerRun else { throw BenchError("the journal open ledger lost positions") }
                try await BlockingThread.run { try ledger.close() }
                let positions = openRuns * stepsPerRun
                return OpenRow(open: label, positions: positions, seconds: elapsed,
                               heapPerPosition: before.flatMap { b in after.map { Double($0 - b) / Double(positions) } })
            }
            for _ in 0..<openRepeats { result.openRows.append(try await measuredOpen("segments, warm")) }
            if keptOpenLedger != nil { return result }
            progress.say("journal open: compacting")
            let compacting = try await BlockingThread.run { try MemoBench.openLedger(directory, create: false) }
            HeapUsage.trim()
            let beforeCompaction = PeakResidentSet.reset() ? PeakResidentSet.read() : nil
            let compactionClock = MonotonicClock()
            try await compacting.compact()
            result.compactionSeconds = compactionClock.elapsedSeconds
            if let before = beforeCompaction, let after = PeakResidentSet.read() {
                result.compactionPeakBytes = after.peak - before.current
            }
            try await BlockingThread.run { try compacting.close() }
            result.openRows.append(try await measuredOpen("snapshot, warm"))
            // The steady state of a compacting ledger: its values are in the last snapshot. A
            // journal records steps one at a time beside it: with the snapshot written on its own
            // thread (the default), then with it written on the I/O thread (appends wait).
            for background in [true, false] {
                var chosen = LogConfiguration()
                chosen.compactsInBackground = background
                let configuration = chosen
                let again = try await BlockingThread.run {
                    try MemoBench.openLedger(directory, create: false, configuration: configuration)
                }
                let beside = try await compactBeside(again, run: "beside-\(background)")
                if background {
                    result.recompactionSeconds = beside.seconds
                    result.besideBackground = beside
                } else {
                    result.besideForeground = beside
                }
                try await BlockingThread.run { try again.close() }
            }
            try FileManager.default.removeItem(atPath: directory)
        }
        return result
    }

    /// One caller recording steps in journal `run`, one at a time, beside `ledger.compact()`.
    static func compactBeside(_ ledger: Ledger, run: String) async throws -> CompactionBeside {
        let journal = try await ledger.journal(run: run, limits: limits)
        return try await CompactionBeside.measure(ledger) { _ = try await journal.step("s") { output } }
    }

    /// Records `steps` steps in each of `runs`, 64 runs at a time (group commit fills the ledger fast).
    static func fill(_ ledger: Ledger, runs: [String], steps: Int) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<min(64, runs.count) {
                group.addTask {
                    for index in stride(from: lane, to: runs.count, by: 64) {
                        let journal = try await ledger.journal(run: runs[index], limits: limits)
                        for _ in 0..<steps { _ = try await journal.step("s") { output } }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    static func render(_ result: Result) -> String {
        let ratio1 = MemoBench.median(zip(result.step1, result.raw).map { $0 / $1 })
        let ratioMany = MemoBench.median(zip(result.stepMany, result.raw).map { $0 / $1 })
        var rates = TextTable(["journal (J1–J3)", "median", "median ratio to raw", "target", "met"])
        if result.rows.contains(.steps) {
            rates.add(["raw pwrite+fdatasync loop", Format.rate(MemoBench.median(result.raw)) + "/s", "1.00", "", ""])
            rates.add(["J1 record a step, 1 run", Format.rate(MemoBench.median(result.step1)) + "/s", Format.fixed(ratio1, 2),
                       "≥ 0.9 × raw", ratio1 >= 0.9 ? "yes" : "NO"])
            rates.add(["J2 record a step, \(result.callers) runs at once", Format.rate(MemoBench.median(result.stepMany)) + "/s",
                       Format.fixed(ratioMany, 2), "≥ 20 × raw", ratioMany >= 20 ? "yes" : "NO"])
        }
        let replayMs = result.replaySeconds * 1000
        let scaledReplay = replayMs * 10_000 / Double(max(result.replaySteps, 1))
        if result.rows.contains(.replay) {
            rates.add(["J3 replay \(Format.grouped(result.replaySteps)) steps, warm", Format.fixed(replayMs, 1) + " ms", "",
                       "< 20 ms per 10 k", scaledReplay < 20 ? "yes" : "NO"])
        }
        var perRound = TextTable(["round", "raw/s", "steps 1 run/s", "CPU µs/step", "steps \(result.callers) runs/s",
                                  "CPU µs/step", "records/batch", "batch µs = write+sync + onDurable + resume"])
        for index in result.raw.indices {
            perRound.add(["\(index + 1)", Format.rate(result.raw[index]), Format.rate(result.step1[index]),
                          Format.fixed(result.step1Cost[index].cpuMicrosecondsPerOperation, 1),
                          Format.rate(result.stepMany[index]),
                          Format.fixed(result.stepManyCost[index].cpuMicrosecondsPerOperation, 1),
                          Format.fixed(result.stepManyCost[index].recordsPerBatch, 1),
                          result.stepManyCost[index].batchBreakdown])
        }
        var open = TextTable(["J4 open from", "positions", "time", "heap/position", "scaled to 10 M", "target"])
        for row in result.openRows {
            let scaled = row.seconds * 10_000_000 / Double(max(row.positions, 1))
            open.add([row.open, Format.grouped(row.positions), Format.seconds(row.seconds),
                      row.heapPerPosition.map { Format.fixed($0, 1) + " B" } ?? "n/a",
                      Format.seconds(scaled) + (scaled < 2 ? " (met)" : " (NOT met)"), "< 2 s for 100 k × 100"])
        }
        var parts = ["Journal (J1–J4)"]
        if result.rows.contains(.steps) || result.rows.contains(.replay) { parts.append(rates.render()) }
        if result.rows.contains(.steps) { parts.append(perRound.render()) }
        if result.rows.contains(.open) {
            parts.append(open.render())
            parts.append("(J4 ledger: \(Format.grouped(result.openRuns)) runs × \(result.stepsPerRun) steps; the scaled column assumes linear growth)")
            parts.append("compaction of the J4 ledger: resident set rose \(result.compactionPeakBytes.map { "\(Format.grouped($0 / 1_048_576)) MiB at its peak, \(Format.fixed(Double($0) / Double(max(result.openRuns * result.stepsPerRun, 1)), 1)) B per position" } ?? "n/a (no /proc, or a kept ledger: not compacted)")\(result.compactionSeconds.map { "; it took \(Format.seconds($0))" } ?? "")\(result.recompactionSeconds.map { "; compacting it again (values in the snapshot) took \(Format.seconds($0))" } ?? "")")
            for (label, beside) in [("snapshot on its own thread", result.besideBackground),
                                    ("snapshot on the I/O thread", result.besideForeground)] {
                guard let beside else { continue }
                parts.append("steps of one journal beside a compaction (\(label)): \(beside.summary("recorded"))")
            }
        }
        return parts.joined(separator: "\n")
    }
}

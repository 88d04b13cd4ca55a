import ArgumentParser
import Foundation
import OnceLedgerFormat
@_spi(Benchmarks) import OnceLedgerLog
import PostgresNIO

/// `onceledger-bench`: the engine against the physical limit (a raw
/// pwrite+fdatasync loop) and against SQLite, side by side in one run, reported
/// as ratios next to the targets in Benchmarks/README.md. Not a test: nothing
/// here asserts on time; a missed target is reported, not failed.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "onceledger-bench",
        abstract: "Measure append, once and recovery speed against a raw fdatasync loop and SQLite.",
        discussion: """
            Creates a fresh directory inside --dir (default: the current directory, because /tmp is \
            often memory-backed), runs every measurement there in one process, prints a table and \
            removes the directory. The disk under --dir is what gets measured. The exactly-once part \
            (Ledger.once rates, memory per done entry, open time of a ledger of done entries) can be \
            skipped with --skip-ledger.
            """)

    @Option(help: "Directory to create the benchmark's scratch directory in (default: current directory).")
    var dir: String?

    @Option(parsing: .unconditional, help: "Seconds per rate row (thirteen rows; eight with --skip-ledger), split over the rounds.")
    var seconds: Double = 4.0

    @Option(parsing: .unconditional, help: "Rounds the rate measurements are interleaved in (ratios are per-round medians; 26 completes the balanced order of the 13 rows).")
    var rounds: Int = 26

    @Option(parsing: .unconditional, help: "Records in the recovery-scan ledger (default fills ~200 MB of 64 MiB segments).")
    var records: Int = 1_200_000

    @Option(parsing: .unconditional, help: "Small records in the open-time ledger.")
    var openRecords: Int = 1_000_000

    @Option(parsing: .unconditional, help: "Concurrent appenders (engine tasks, SQLite threads) for the concurrent rows.")
    var appenders: Int = 64

    @Option(parsing: .unconditional, help: "Record body bytes for the rate measurements.")
    var bodyBytes: Int = 100

    @Option(parsing: .unconditional, help: "Done entries in the memory-per-entry ledgers and in the open-time ledger.")
    var ledgerEntries: Int = 1_000_000

    @Flag(help: "Skip the exactly-once part: Ledger.once rates, memory per entry, ledger open time.")
    var skipLedger = false

    @Flag(help: "Measure only values on disk (T11–T13): memory per entry and open time with large receipts, alreadyDone reading a receipt.")
    var values = false

    @Option(parsing: .unconditional, help: "Done entries in each values-on-disk ledger (T11–T13).")
    var valuesEntries: Int = 100_000

    @Option(parsing: .unconditional, help: "Receipt sizes of the values-on-disk ledgers, comma-separated bytes.")
    var valuesReceiptBytes: String = "64,4096"

    @Flag(help: "Measure only the memo (T14–T18): put rates against the raw loop, cache hits, open of memo entries, sweep of ended runs.")
    var memo = false

    @Option(parsing: .unconditional, help: "Memo values in the memo open-time ledger (T17; the target is for 1000000).")
    var memoEntries: Int = 100_000

    @Option(parsing: .unconditional, help: "Ended runs the memo sweep removes (T18; the target is for 100000).")
    var memoRuns: Int = 20_000

    @Option(parsing: .unconditional, help: "Rounds the memo put rates are interleaved with the raw loop in.")
    var memoRounds: Int = 6

    @Flag(help: "Measure only PostgreSQL (T19–T20): Ledger.once on PostgresStore against the hand-written idempotency table, on a throw-away cluster unless --postgres-url is given.")
    var postgres = false

    @Option(help: "With --postgres: the server to measure (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE or postgres://USER@/DATABASE?host=/socket/dir); default: a throw-away cluster started for the run.")
    var postgresUrl: String?

    @Option(parsing: .unconditional, help: "With --postgres: connections of the concurrent rows (both sides), shared by --appenders callers.")
    var postgresConnections: Int = 8

    @Option(parsing: .unconditional, help: "With --postgres: rounds the four PostgreSQL rows are interleaved in.")
    var postgresRounds: Int = 8

    @Flag(help: "Measure only memo puts on PostgreSQL: group-committed (the store's default) against one put per statement, --appenders runs over --postgres-connections connections (no target).")
    var postgresMemo = false

    @Flag(help: "Measure only the replay journal (J1–J4): recorded steps against the raw loop, replay of a long run, open of many runs.")
    var journal = false

    @Option(parsing: .unconditional, help: "Steps of the run the journal replay times (J3; the target is for 10000).")
    var journalReplaySteps: Int = 10_000

    @Option(parsing: .unconditional, help: "Runs of 100 steps in the journal open-time ledger (J4; the target is for 100000).")
    var journalRuns: Int = 2_000

    @Option(parsing: .unconditional, help: "Journal rows to run, comma-separated: steps (J1/J2), replay (J3), open (J4).")
    var journalRows: String = "steps,replay,open"

    @Option(help: "J4 on the ledger kept in this directory (recorded there with --journal-runs runs if it holds none): only the open from segments, --journal-open-repeats times; the ledger is kept.")
    var journalOpenLedger: String?

    @Option(parsing: .unconditional, help: "With --journal-open-ledger: how many times J4 opens the ledger.")
    var journalOpenRepeats: Int = 1
    @Option(parsing: .unconditional, help: "Memo rows to run, comma-separated: put (T14/T15), hit (T16), open (T17), sweep (T18).")
    var memoRows: String = "put,hit,open,sweep"

    @Option(parsing: .unconditional, help: "T16: this many gets per path instead of --seconds of them (for callgrind: a count, not a time).")
    var memoHits: Int?

    @Flag(help: "Print one JSON object with every number instead of the table.")
    var json = false

    @Flag(help: "Keep the scratch directory.")
    var keep = false

    func validate() throws {
        guard seconds > 0, seconds <= 600 else { throw ValidationError("--seconds must be in (0, 600]") }
        guard (1...100).contains(rounds) else { throw ValidationError("--rounds must be in 1...100") }
        guard records >= 1, openRecords >= 1, ledgerEntries >= 1, ledgerEntries < 10_000_000_000_000 else { throw ValidationError("record counts must be positive") }
        guard appenders >= 1, appenders <= 4096 else { throw ValidationError("--appenders must be in 1...4096") }
        guard bodyBytes >= 1, bodyBytes <= 65536 else { throw ValidationError("--body-bytes must be in 1...65536") }
    }

    static let smallBodyBytes = 16
    /// The receipt every benchmark `once` stores.
    static let receipt: [UInt8] = Array("receipt1".utf8)
    /// Key lengths of the memory and open-time ledgers: inline in a Swift String, and not.
    static let shortKeyBytes = 14
    static let longKeyBytes = 40

    /// The interleaved rate measurements (`roundOrder` sets their order in each round).
    enum Measurement: String, CaseIterable {
        case raw, rawDirect, engine1, engine1Blocking, engine1Executor, engine64, sqlite1, sqlite64,
             once1, once1Executor, once64, sqliteOnce1, sqliteOnce64
    }

    /// The order of `count` measurements in round `round` (from 1): a Williams
    /// balanced Latin square. Its first row is 0, 1, n−1, 2, n−2, …; row k adds k to
    /// each entry (mod n); for an odd n the rows are followed by their reverses.
    /// Within one period of rounds (n rounds for an even n, 2n for an odd one) each
    /// measurement runs once in every position, and right after each other
    /// measurement equally often (once, or twice for an odd n). A plain rotation of
    /// one order would not do that: it moves every row but keeps who follows whom,
    /// so a row that always came after a disk-heavy one would still always pay for it.
    static func roundOrder(round: Int, count: Int) -> [Int] {
        guard count > 0 else { return [] }
        var first = [0]
        var (low, high) = (1, count - 1)
        while first.count < count {
            if first.count % 2 == 1 {
                first.append(low)
                low += 1
            } else {
                first.append(high)
                high -= 1
            }
        }
        let period = count % 2 == 0 ? count : 2 * count
        let row = (round - 1) % period
        if row < count { return first.map { ($0 + row) % count } }
        return first.map { ($0 + row - count) % count }.reversed()
    }

    /// The rows a comma-separated `--…-rows` value names; a ValidationError listing the
    /// accepted names for an empty value or an unknown name.
    static func rows<Row: RawRepresentable & CaseIterable & Hashable>(_ text: String, option: String) throws -> Set<Row>
        where Row.RawValue == String
    {
        let names = text.split(separator: ",").map { String($0) }
        let rows = names.compactMap(Row.init(rawValue:))
        guard !names.isEmpty, rows.count == names.count else {
            throw ValidationError("\(option) takes \(Row.allCases.map(\.rawValue).joined(separator: ", ")) (comma-separated)")
        }
        return Set(rows)
    }

    func run() async throws {
        let total = MonotonicClock()
        let parent = URL(fileURLWithPath: dir ?? FileManager.default.currentDirectoryPath).standardizedFileURL.path
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        let root = parent + "/onceledger-bench-\(getpid())"
        if FileManager.default.fileExists(atPath: root) { try FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: false)
        defer { if !keep { try? FileManager.default.removeItem(atPath: root) } }
        func scratch(_ name: String) throws -> String {
            let path = root + "/" + name
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
            return path
        }

        let disk = DiskDescription.of(root)
        let configuration = LogConfiguration()
        let body = [UInt8]((0..<bodyBytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        let frameBytes = RecordFrame.frameBytes(bodyBytes: bodyBytes)
        let progress = Progress(enabled: isatty(STDERR_FILENO) != 0)
        progress.say("bench directory: \(root) (\(disk.summary))")
        if disk.isMemoryBacked {
            progress.say("warning: \(root) is on \(disk.fileSystem ?? "memory"): fdatasync costs nothing there; use --dir on a real disk")
        }

        if values {
            let sizes = valuesReceiptBytes.split(separator: ",").compactMap { Int($0) }
            guard !sizes.isEmpty, sizes.allSatisfy({ (0...(1 << 20)).contains($0) }), valuesEntries >= 1 else {
                throw ValidationError("--values-receipt-bytes: comma-separated sizes in 0...1048576; --values-entries ≥ 1")
            }
            let result = try await ValuesOnDisk.run(root: root, entries: valuesEntries, receiptSizes: sizes,
                                                    seconds: seconds, keep: keep, progress: progress)
            print("disk: \(disk.summary)")
            print(ValuesOnDisk.render(result))
            return
        }

        if postgresMemo {
            guard (2...256).contains(postgresConnections), (1...100).contains(postgresRounds) else {
                throw ValidationError("--postgres-connections in 2...256; --postgres-rounds in 1...100")
            }
            let result = try await PostgresMemoBench.run(url: postgresUrl, rounds: postgresRounds, seconds: seconds,
                                                         callers: appenders, connections: postgresConnections,
                                                         progress: progress)
            print(PostgresMemoBench.render(result))
            return
        }

        if postgres {
            guard (1...256).contains(postgresConnections), (1...100).contains(postgresRounds) else {
                throw ValidationError("--postgres-connections in 1...256; --postgres-rounds in 1...100")
            }
            let result: PostgresBench.Result
            do {
                result = try await PostgresBench.run(url: postgresUrl, rounds: postgresRounds, seconds: seconds,
                                                     callers: appenders, connections: postgresConnections,
                                                     progress: progress)
            } catch let error as PSQLError {
                // postgres-nio's description hides the server's message; the bench's own
                // server (or the operator's) is no secret to the one running it.
                throw BenchError("PostgreSQL: \(String(reflecting: error))")
            }
            print(PostgresBench.render(result))
            return
        }

        if journal {
            guard journalReplaySteps >= 1, journalRuns >= 1, (1...100).contains(journalOpenRepeats) else {
                throw ValidationError("--journal-replay-steps and --journal-runs ≥ 1; --journal-open-repeats in 1...100")
            }
            let rows: Set<JournalBench.Row> = try Self.rows(journalRows, option: "--journal-rows")
            let result = try await JournalBench.run(root: root, rows: rows,
                                                    rounds: memoRounds, seconds: seconds, callers: appenders,
                                                    replaySteps: journalReplaySteps, openRuns: journalRuns,
                                                    stepsPerRun: 100, keptOpenLedger: journalOpenLedger,
                                                    openRepeats: journalOpenRepeats, progress: progress)
            print("disk: \(disk.summary)")
            print(JournalBench.render(result))
            return
        }

        if memo {
            guard memoEntries >= 1, memoRuns >= 1, (1...100).contains(memoRounds), (memoHits ?? 1) >= 1 else {
                throw ValidationError("--memo-entries, --memo-runs and --memo-hits ≥ 1; --memo-rounds in 1...100")
            }
            let rows: Set<MemoBench.Row> = try Self.rows(memoRows, option: "--memo-rows")
            let result = try await MemoBench.run(root: root, rows: rows,
                                                 rounds: memoRounds, seconds: seconds, callers: appenders,
                                                 valueBytes: bodyBytes, hits: memoHits, openEntries: memoEntries,
                                                 sweepRuns: memoRuns, progress: progress)
            print("disk: \(disk.summary)")
            print(MemoBench.render(result))
            return
        }

        // Memory per done entry first, while the heap is fresh (the heap figure does
        // not depend on it; the resident-set figure is tighter for it).
        var memory: [BenchResults.MemoryPerEntry] = []
        if !skipLedger {
            for (label, keyBytes) in [("short keys (inline)", BenchCommand.shortKeyBytes),
                                      ("40-byte keys", BenchCommand.longKeyBytes)] {
                progress.say("memory: \(Format.grouped(ledgerEntries)) done entries, \(keyBytes)-byte keys")
                let entries = ledgerEntries
                memory.append(try await LedgerMemory.run(label: label, entries: entries, keyBytes: keyBytes,
                                                         receipt: BenchCommand.receipt))
            }
        }

        // Rate measurements, interleaved in rounds (see `BenchResults.Round`).
        let measurements = BenchCommand.Measurement.allCases.filter { measurement in
            switch measurement {
            case .once1, .once1Executor, .once64, .sqliteOnce1, .sqliteOnce64: !skipLedger
            default: true
            }
        }
        let slot = seconds / Double(rounds)
        let raw = try await BlockingThread.run { [rawDirectory = try scratch("raw")] in
            try RawSyncLoop(directory: rawDirectory, recordBytes: frameBytes)
        }
        let rawDirect = try await BlockingThread.run { [rawDirectory = try scratch("raw-direct")] in
            try RawSyncLoop(directory: rawDirectory, recordBytes: frameBytes, direct: true)
        }
        let engineSingle = try await EngineThroughput.open(
            directory: try scratch("engine-1"), configuration: configuration, body: body)
        let engineBlocking = try await EngineThroughput.open(
            directory: try scratch("engine-1-blocking"), configuration: configuration, body: body)
        let engineExecutor = try await EngineThroughput.open(
            directory: try scratch("engine-1-executor"), configuration: configuration, body: body)
        let spinningExecutor = SpinningExecutor(name: "bench-executor")
        defer { spinningExecutor.shutdown() }
        let engineMany = try await EngineThroughput.open(
            directory: try scratch("engine-\(appenders)"), configuration: configuration, body: body)
        let sqliteSingle = try await SQLiteBaseline.prepare(directory: try scratch("sqlite-1"))
        let sqliteMany = try await SQLiteBaseline.prepare(directory: try scratch("sqlite-\(appenders)"))
        var onceSingle: OnceThroughput?
        var onceSingleExecutor: OnceThroughput?
        var onceMany: OnceThroughput?
        var sqliteOnceSingle = ""
        var sqliteOnceMany = ""
        if !skipLedger {
            onceSingle = try await OnceThroughput.open(
                directory: try scratch("once-1"), configuration: configuration, receipt: BenchCommand.receipt)
            onceSingleExecutor = try await OnceThroughput.open(
                directory: try scratch("once-1-executor"), configuration: configuration, receipt: BenchCommand.receipt)
            onceMany = try await OnceThroughput.open(
                directory: try scratch("once-\(appenders)"), configuration: configuration, receipt: BenchCommand.receipt)
            sqliteOnceSingle = try await SQLiteOnceBaseline.prepare(directory: try scratch("sqlite-once-1"))
            sqliteOnceMany = try await SQLiteOnceBaseline.prepare(directory: try scratch("sqlite-once-\(appenders)"))
        }
        var measured: [RoundMeasurements] = []
        for round in 1...rounds {
            // A balanced order (see `roundOrder`): over the rounds every row runs right
            // after every other row equally often, so no row always follows the
            // disk-heavy SQLite rows (a busy or throttled disk punishes whoever comes next).
            let order = BenchCommand.roundOrder(round: round, count: measurements.count).map { measurements[$0] }
            var rates = RoundMeasurements(order: order)
            // Fresh keys every round: the once ledgers and databases live across rounds.
            let keyPrefix = "r\(round)"
            for measurement in order {
                let prefix = "round \(round)/\(rounds):"
                switch measurement {
                case .raw:
                    progress.say("\(prefix) raw pwrite(\(frameBytes) B)+fdatasync loop, \(Format.fixed(slot, 2)) s")
                    rates.raw = try await BlockingThread.run(name: "raw-sync") { try raw.run(seconds: slot) }
                case .rawDirect:
                    progress.say("\(prefix) raw O_DIRECT pwritev2(4 KiB, RWF_DSYNC) loop (diagnostic)")
                    rates.rawDirect = try await BlockingThread.run(name: "raw-sync") { try rawDirect.run(seconds: slot) }
                case .engine1:
                    progress.say("\(prefix) engine, 1 appender")
                    rates.engine1 = try await engineSingle.run(appenders: 1, seconds: slot)
                case .engine1Blocking:
                    progress.say("\(prefix) engine, 1 appender via blocking appendAndWait (diagnostic)")
                    rates.engine1Blocking = try await engineBlocking.runBlocking(seconds: slot)
                case .engine1Executor:
                    progress.say("\(prefix) engine, 1 appender on a SpinningExecutor (diagnostic)")
                    rates.engine1Executor = try await engineExecutor.run(appenders: 1, seconds: slot, on: spinningExecutor)
                case .engine64:
                    progress.say("\(prefix) engine, \(appenders) appenders")
                    rates.engine64 = try await engineMany.run(appenders: appenders, seconds: slot)
                case .sqlite1:
                    progress.say("\(prefix) SQLite, 1 connection")
                    rates.sqlite1 = try await SQLiteBaseline.run(path: sqliteSingle, writers: 1, body: body, seconds: slot)
                case .sqlite64:
                    progress.say("\(prefix) SQLite, \(appenders) connections")
                    rates.sqlite64 = try await SQLiteBaseline.run(path: sqliteMany, writers: appenders, body: body,
                                                                  seconds: slot)
                case .once1:
                    progress.say("\(prefix) Ledger.once, 1 caller")
                    rates.once1 = try await onceSingle!.run(callers: 1, seconds: slot, keyPrefix: keyPrefix)
                case .once1Executor:
                    progress.say("\(prefix) Ledger.once, 1 caller on ledger.executor (diagnostic)")
                    rates.once1Executor = try await onceSingleExecutor!.run(
                        callers: 1, seconds: slot, keyPrefix: keyPrefix, onLedgerExecutor: true)
                case .once64:
                    progress.say("\(prefix) Ledger.once, \(appenders) callers")
                    rates.once64 = try await onceMany!.run(callers: appenders, seconds: slot, keyPrefix: keyPrefix)
                case .sqliteOnce1:
                    progress.say("\(prefix) SQLite once (2 transactions), 1 connection")
                    rates.sqliteOnce1 = try await SQLiteOnceBaseline.run(
                        path: sqliteOnceSingle, writers: 1, receipt: BenchCommand.receipt, keyPrefix: keyPrefix,
                        seconds: slot)
                case .sqliteOnce64:
                    progress.say("\(prefix) SQLite once (2 transactions), \(appenders) connections")
                    rates.sqliteOnce64 = try await SQLiteOnceBaseline.run(
                        path: sqliteOnceMany, writers: appenders, receipt: BenchCommand.receipt, keyPrefix: keyPrefix,
                        seconds: slot)
                }
            }
            measured.append(rates)
        }
        let roundRates = measured.map { $0.round(skipLedger: skipLedger) }
        for engine in [engineSingle, engineBlocking, engineExecutor, engineMany] { try await engine.close() }
        for once in [onceSingle, onceSingleExecutor, onceMany].compactMap({ $0 }) { try await once.close() }

        progress.say("recovery: building \(Format.grouped(records)) records of \(bodyBytes) bytes, then scanning")
        let scanDirectory = try scratch("scan")
        let records = self.records
        let bodyBytes = self.bodyBytes
        let recovery = try await BlockingThread.run(name: "recovery") {
            try RecoveryThroughput.run(directory: scanDirectory, configuration: configuration, records: records,
                                       bodyBytes: bodyBytes)
        }
        if !keep { try? FileManager.default.removeItem(atPath: scanDirectory) }

        progress.say("open: building \(Format.grouped(openRecords)) records of \(BenchCommand.smallBodyBytes) bytes, then opening")
        let smallDirectory = try scratch("open-small")
        let openRecords = self.openRecords
        let openSmall = try await BlockingThread.run(name: "recovery") {
            try RecoveryThroughput.run(directory: smallDirectory, configuration: configuration, records: openRecords,
                                       bodyBytes: BenchCommand.smallBodyBytes)
        }

        var exactlyOnce: BenchResults.ExactlyOnce?
        if !skipLedger {
            progress.say("ledger open: building \(Format.grouped(ledgerEntries)) done entries (\(BenchCommand.shortKeyBytes)-byte keys), opening, compacting, opening")
            let open = try await LedgerOpenTime.run(
                directory: try scratch("ledger-open"), configuration: configuration, entries: ledgerEntries,
                keyBytes: BenchCommand.shortKeyBytes, receipt: BenchCommand.receipt)
            exactlyOnce = BenchResults.ExactlyOnce(
                once1: .total(measured.map(\.once1)), once1Executor: .total(measured.map(\.once1Executor)),
                once64: .total(measured.map(\.once64)), sqliteOnce1: .total(measured.map(\.sqliteOnce1)),
                sqliteOnce64: .total(measured.map(\.sqliteOnce64)), receiptBytes: BenchCommand.receipt.count,
                sqliteDescription: SQLiteOnceBaseline.description, ratios: BenchResults.OnceRatios(roundRates),
                memory: memory, open: open)
        }

        var results = BenchResults(
            setup: .init(
                date: ISO8601DateFormatter().string(from: Date()), processors: ProcessInfo.processInfo.activeProcessorCount,
                disk: disk, secondsPerMeasurement: seconds, rounds: rounds, recordBodyBytes: bodyBytes, recordFrameBytes: frameBytes,
                appenders: appenders, segmentBytes: configuration.segmentBytes,
                sqliteWriters: SQLiteBaseline.writersDescription),
            rawLoop: .total(measured.map(\.raw)), rawDirectLoop: .total(measured.map(\.rawDirect)),
            engine1: .total(measured.map(\.engine1)),
            engine1Blocking: .total(measured.map(\.engine1Blocking)), engine1Executor: .total(measured.map(\.engine1Executor)),
            engine64: .total(measured.map(\.engine64)), sqlite1: .total(measured.map(\.sqlite1)),
            sqlite64: .total(measured.map(\.sqlite64)),
            rounds: roundRates, ratios: BenchResults.Ratios(roundRates),
            recovery: recovery, openSmall: openSmall, exactlyOnce: exactlyOnce, targets: [], totalSeconds: 0)
        results.targets = results.evaluateTargets()
        results.totalSeconds = total.elapsedSeconds

        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(results), as: UTF8.self))
        } else {
            print(results.renderTable())
        }
    }
}

/// What one round measured, a field per row (a row the run skips stays empty), and
/// the order the rows ran in.
private struct RoundMeasurements {
    let order: [BenchCommand.Measurement]
    var raw = BenchResults.Rate(operations: 0, seconds: 0)
    var rawDirect = BenchResults.Rate(operations: 0, seconds: 0)
    var engine1 = BenchResults.EngineRate.total([])
    var engine1Blocking = BenchResults.EngineRate.total([])
    var engine1Executor = BenchResults.EngineRate.total([])
    var engine64 = BenchResults.EngineRate.total([])
    var sqlite1 = BenchResults.SQLiteRate.total([])
    var sqlite64 = BenchResults.SQLiteRate.total([])
    var once1 = BenchResults.EngineRate.total([])
    var once1Executor = BenchResults.EngineRate.total([])
    var once64 = BenchResults.EngineRate.total([])
    var sqliteOnce1 = BenchResults.SQLiteRate.total([])
    var sqliteOnce64 = BenchResults.SQLiteRate.total([])

    /// The round's rates, as `--json` lists them and the ratios are taken from.
    func round(skipLedger: Bool) -> BenchResults.Round {
        BenchResults.Round(
            rawLoop: raw.perSecond, rawDirectLoop: rawDirect.perSecond, engine1: engine1.rate.perSecond,
            engine1Blocking: engine1Blocking.rate.perSecond, engine1Executor: engine1Executor.rate.perSecond,
            engine64: engine64.rate.perSecond,
            sqlite1: sqlite1.rate.perSecond, sqlite64: sqlite64.rate.perSecond,
            once1: skipLedger ? nil : once1.rate.perSecond,
            once1Executor: skipLedger ? nil : once1Executor.rate.perSecond, once64: skipLedger ? nil : once64.rate.perSecond,
            sqliteOnce1: skipLedger ? nil : sqliteOnce1.rate.perSecond,
            sqliteOnce64: skipLedger ? nil : sqliteOnce64.rate.perSecond,
            order: order.map(\.rawValue))
    }
}

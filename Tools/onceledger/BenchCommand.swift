import ArgumentParser
import Foundation
import OnceLedgerFormat
import OnceLedgerLog

/// `onceledger bench`: the engine against the physical limit (a raw
/// pwrite+fdatasync loop) and against SQLite, side by side in one run, reported
/// as ratios next to the DESIGN §6 targets (DESIGN §4, §6). Not a test: nothing
/// here asserts on time; a missed target is reported, not failed.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure append and recovery speed against a raw fdatasync loop and SQLite.",
        discussion: """
            Creates a fresh directory inside --dir (default: the current directory, because /tmp is \
            often memory-backed), runs every measurement there in one process, prints a table and \
            removes the directory. The disk under --dir is what gets measured.
            """)

    @Option(help: "Directory to create the benchmark's scratch directory in (default: current directory).")
    var dir: String?

    @Option(help: "Seconds per rate measurement (six of them), split over the rounds.")
    var seconds: Double = 4.8

    @Option(help: "Rounds the rate measurements are interleaved in (ratios are per-round medians).")
    var rounds: Int = 12

    @Option(help: "Records in the recovery-scan ledger (default fills ~200 MB of 64 MiB segments).")
    var records: Int = 1_200_000

    @Option(help: "Small records in the open-time ledger.")
    var openRecords: Int = 1_000_000

    @Option(help: "Concurrent appenders (engine tasks, SQLite threads) for the concurrent rows.")
    var appenders: Int = 64

    @Option(help: "Record body bytes for the rate measurements.")
    var bodyBytes: Int = 100

    @Flag(help: "Print one JSON object with every number instead of the table.")
    var json = false

    @Flag(help: "Keep the scratch directory.")
    var keep = false

    func validate() throws {
        guard seconds > 0, seconds <= 600 else { throw ValidationError("--seconds must be in (0, 600]") }
        guard (1...100).contains(rounds) else { throw ValidationError("--rounds must be in 1...100") }
        guard records >= 1, openRecords >= 1 else { throw ValidationError("record counts must be positive") }
        guard appenders >= 1, appenders <= 4096 else { throw ValidationError("--appenders must be in 1...4096") }
        guard bodyBytes >= 1, bodyBytes <= 65536 else { throw ValidationError("--body-bytes must be in 1...65536") }
    }

    static let smallBodyBytes = 16

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

        // Rate measurements, interleaved in rounds (see `BenchResults.Round`).
        let slot = seconds / Double(rounds)
        let raw = try await BlockingThread.run { [rawDirectory = try scratch("raw")] in
            try RawSyncLoop(directory: rawDirectory, recordBytes: frameBytes)
        }
        let engineSingle = try await EngineThroughput.open(
            directory: try scratch("engine-1"), configuration: configuration, body: body)
        let engineBlocking = try await EngineThroughput.open(
            directory: try scratch("engine-1-blocking"), configuration: configuration, body: body)
        let engineMany = try await EngineThroughput.open(
            directory: try scratch("engine-\(appenders)"), configuration: configuration, body: body)
        let sqliteSingle = try await SQLiteBaseline.prepare(directory: try scratch("sqlite-1"))
        let sqliteMany = try await SQLiteBaseline.prepare(directory: try scratch("sqlite-\(appenders)"))
        var rawRates: [BenchResults.Rate] = []
        var engine1Rates: [BenchResults.EngineRate] = []
        var engine1BlockingRates: [BenchResults.EngineRate] = []
        var engine64Rates: [BenchResults.EngineRate] = []
        var sqlite1Rates: [BenchResults.SQLiteRate] = []
        var sqlite64Rates: [BenchResults.SQLiteRate] = []
        var roundRates: [BenchResults.Round] = []
        for round in 1...rounds {
            // Each round starts one measurement later than the previous one, so no row
            // always runs right after the disk-heavy SQLite rows (a token-bucket
            // throttled disk punishes whoever comes next).
            let order = (0..<6).map { ($0 + round - 1) % 6 }
            var rawRate = BenchResults.Rate(operations: 0, seconds: 0)
            var engine1 = BenchResults.EngineRate.total([])
            var engine1Blocking = engine1
            var engine64 = engine1
            var sqlite1 = BenchResults.SQLiteRate.total([])
            var sqlite64 = sqlite1
            for measurement in order {
                let prefix = "round \(round)/\(rounds):"
                switch measurement {
                case 0:
                    progress.say("\(prefix) raw pwrite(\(frameBytes) B)+fdatasync loop, \(Format.fixed(slot, 2)) s")
                    rawRate = try await BlockingThread.run(name: "raw-sync") { try raw.run(seconds: slot) }
                case 1:
                    progress.say("\(prefix) engine, 1 appender")
                    engine1 = try await engineSingle.run(appenders: 1, seconds: slot)
                case 2:
                    progress.say("\(prefix) engine, 1 appender via blocking appendAndWait (diagnostic)")
                    engine1Blocking = try await engineBlocking.runBlocking(seconds: slot)
                case 3:
                    progress.say("\(prefix) engine, \(appenders) appenders")
                    engine64 = try await engineMany.run(appenders: appenders, seconds: slot)
                case 4:
                    progress.say("\(prefix) SQLite, 1 connection")
                    sqlite1 = try await SQLiteBaseline.run(path: sqliteSingle, writers: 1, body: body, seconds: slot)
                default:
                    progress.say("\(prefix) SQLite, \(appenders) connections")
                    sqlite64 = try await SQLiteBaseline.run(path: sqliteMany, writers: appenders, body: body,
                                                            seconds: slot)
                }
            }
            rawRates.append(rawRate)
            engine1Rates.append(engine1)
            engine1BlockingRates.append(engine1Blocking)
            engine64Rates.append(engine64)
            sqlite1Rates.append(sqlite1)
            sqlite64Rates.append(sqlite64)
            roundRates.append(.init(
                rawLoop: rawRate.perSecond, engine1: engine1.rate.perSecond,
                engine1Blocking: engine1Blocking.rate.perSecond, engine64: engine64.rate.perSecond,
                sqlite1: sqlite1.rate.perSecond, sqlite64: sqlite64.rate.perSecond))
        }
        for engine in [engineSingle, engineBlocking, engineMany] { try await engine.close() }

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

        var results = BenchResults(
            setup: .init(
                date: ISO8601DateFormatter().string(from: Date()), processors: ProcessInfo.processInfo.activeProcessorCount,
                disk: disk, secondsPerMeasurement: seconds, rounds: rounds, recordBodyBytes: bodyBytes, recordFrameBytes: frameBytes,
                appenders: appenders, segmentBytes: configuration.segmentBytes,
                sqliteWriters: SQLiteBaseline.writersDescription),
            rawLoop: .total(rawRates), engine1: .total(engine1Rates), engine1Blocking: .total(engine1BlockingRates),
            engine64: .total(engine64Rates), sqlite1: .total(sqlite1Rates), sqlite64: .total(sqlite64Rates),
            rounds: roundRates, ratios: BenchResults.Ratios(roundRates),
            recovery: recovery, openSmall: openSmall, targets: [], totalSeconds: 0)
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

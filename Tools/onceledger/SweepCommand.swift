import ArgumentParser
import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog

/// `onceledger sweep DIR|URL --retention DURATION [--dry-run]`: sweeps the memo of every run
/// generation that ended at least DURATION ago (`Ledger.sweepMemo`), as the background
/// sweeper of a ledger opened with `memoRetention:` does.
struct SweepCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Sweep the memo of runs that ended longer ago than a retention window.",
        discussion: """
            A run's memo is swept once its run-end record is at least the retention window old \
            (by this machine's clock), as a ledger opened with `memoRetention:` does in the \
            background. Runs without a run-end record are never swept, and neither are `once` \
            entries. Each swept run generation gets a memo-sweep record; compaction then drops \
            its values. A run that ended after now (a clock that went backwards) is not swept.

            DURATION is a whole number with a unit: ms, s, m, h or d (for example 30m, 7d; 0s \
            sweeps every ended run).

            Opens the ledger for writing: it takes the lock (a ledger open in another process is \
            refused, exit 8, naming it) and, like every open, cuts a torn tail first. \
            --dry-run only reads (no lock taken; a ledger open in a live process is refused) \
            and prints what would be swept; it writes nothing.

            In place of the directory, a PostgreSQL URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, \
            or postgres://USER@/DATABASE?host=/socket/dir) acts on the ledger in that database (schema \
            --schema) while other processes use it: nothing is locked; the database decides the change \
            atomically, as for any of its clients.

            \(ExitCodes.helpText)
            """)

    @Argument(help: "The ledger directory, or a PostgreSQL URL (postgres://…).")
    var dir: String

    @Option(help: ArgumentHelp("How long after its end a run's memo is kept: a number and ms, s, m, h or d.",
                               valueName: "duration"),
            transform: SweepCommand.parseDuration)
    var retention: UInt64

    @Flag(help: "Print what would be swept; write nothing.")
    var dryRun = false

    @OptionGroup var database: DatabaseOptions

    func validate() throws {
        guard !dir.isEmpty else { throw ValidationError("the ledger directory must not be empty") }
    }

    /// "30m" → 1 800 000 (milliseconds).
    static func parseDuration(_ text: String) throws -> UInt64 {
        let units: [(String, UInt64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for (unit, scale) in units where text.hasSuffix(unit) {
            let digits = text.dropLast(unit.count)
            // "5ms" also ends in "s": only the unit whose prefix is all digits counts.
            guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { continue }
            guard let number = UInt64(digits) else { throw ValidationError("the retention \(text) is too long") }
            let (value, overflow) = number.multipliedReportingOverflow(by: scale)
            guard !overflow else { throw ValidationError("the retention \(text) is too long") }
            return value
        }
        throw ValidationError("the retention \"\(text)\" is not a duration; give a whole number and a unit: ms, s, m, h or d (for example 30m or 7d)")
    }

    func run() async throws {
        try await CommandFailure.reporting { try await sweep() }
    }

    private var window: MemoRetention { MemoRetention(.milliseconds(Int64(clamping: retention))) }

    private func sweep() async throws -> Int32 {
        if dryRun, case .database(let url) = LedgerLocation(dir) { return try await dryRunInDatabase(url) }
        if dryRun {
            let replay = try MemoReplay.read(dir, command: "sweep --dry-run", allowLive: false)
            let due = replay.due(now: LogEngine.systemMilliseconds(), retention: window)
            for key in due {
                let generation = replay.generations[key]!
                print("would sweep \(Self.describe(MemoRun(namespace: key.namespace, run: key.run))) generation \(key.generation) (\(generation.statusName) at \(generation.endTimeMilliseconds.map(TextFormat.time) ?? "?"), \(TextFormat.plural(generation.entryCount, "memo entry", "memo entries")), \(TextFormat.plural(generation.valueBytes, "byte")))")
            }
            let entries = due.reduce(0) { $0 + (replay.generations[$1]?.entryCount ?? 0) }
            print("dry run: would sweep \(TextFormat.plural(due.count, "run generation")) (\(TextFormat.plural(entries, "memo entry", "memo entries"))); nothing was written")
            return ExitCodes.success
        }
        let opened = try await OperatorLedger.open(dir, database: database)
        for note in opened.openNotes { print("note: " + note) }
        let before = try await opened.ledger.runs()
        let result: MemoSweepResult
        do {
            result = try await opened.ledger.sweepMemo(retention: window)
        } catch let error as LedgerError {
            try? opened.close()
            throw CommandFailure(error, hint: "What was swept before the failure stays swept; run the command again to sweep the rest.")
        }
        try opened.close()
        let sizes = Dictionary(before.map { (MemoReplay.GenerationKey(namespace: $0.run.namespace, run: $0.run.run, generation: $0.generation), $0) },
                               uniquingKeysWith: { first, _ in first })
        var swept: [MemoReplay.GenerationKey] = []
        for (run, generations) in result.runs {
            for generation in generations { swept.append(.init(namespace: run.namespace, run: run.run, generation: generation)) }
        }
        // A database deletes the swept rows; a directory's compaction drops the swept records.
        let reclaim = LedgerLocation(dir) == .directory(dir) ? "; `onceledger compact` reclaims their space" : ""
        for key in swept.sorted() {
            let info = sizes[key]
            print("swept \(Self.describe(MemoRun(namespace: key.namespace, run: key.run))) generation \(key.generation) (\(info?.status?.description ?? "?") at \(info?.endTimeMilliseconds.map(TextFormat.time) ?? "?"), \(TextFormat.plural(info?.entryCount ?? 0, "memo entry", "memo entries")), \(TextFormat.plural(info?.valueBytes ?? 0, "byte")))")
        }
        print("swept \(TextFormat.plural(result.generationCount, "run generation")) (\(TextFormat.plural(result.entries, "memo entry", "memo entries")))\(reclaim)")
        return ExitCodes.success
    }

    /// `--dry-run` on a database: the runs the store lists whose end is at least their
    /// status's window before now (`sweepMemo`'s rule).
    private func dryRunInDatabase(_ url: String) async throws -> Int32 {
        let opened = try await DatabaseLedger.open(url, schema: database.schema)
        defer { opened.close() }
        let now = LogEngine.systemMilliseconds()
        let due = try await opened.store.runs(RunQuery()).filter { info in
            guard let status = info.status, let end = info.endTimeMilliseconds,
                  let window = window.windowMilliseconds(for: status) else { return false }
            return now >= end && now - end >= window
        }
        for info in due {
            print("would sweep \(Self.describe(info.run)) generation \(info.generation) (\(info.status?.description ?? "?") at \(info.endTimeMilliseconds.map(TextFormat.time) ?? "?"), \(TextFormat.plural(info.entryCount, "memo entry", "memo entries")), \(TextFormat.plural(info.valueBytes, "byte")))")
        }
        let entries = due.reduce(0) { $0 + $1.entryCount }
        print("dry run: would sweep \(TextFormat.plural(due.count, "run generation")) (\(TextFormat.plural(entries, "memo entry", "memo entries"))); nothing was written")
        return ExitCodes.success
    }

    static func describe(_ run: MemoRun) -> String {
        run.namespace.isEmpty ? "run \(TextFormat.quoted(run.run))" : "run \(TextFormat.quoted(run.run)) in namespace \(TextFormat.quoted(run.namespace))"
    }
}

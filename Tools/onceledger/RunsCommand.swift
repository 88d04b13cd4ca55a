import ArgumentParser
import OnceLedger
import OnceLedgerFormat

/// `onceledger runs DIR|URL [--namespace NS] [--json]`: one row per run generation of the
/// memo (running, ended, or swept while its sweep record is on disk), read-only.
struct RunsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs",
        abstract: "List the memo's runs: status, end time, memo entries and bytes, swept or not.",
        discussion: """
            One row per run generation (a run id used again after its run ended starts a new \
            generation), sorted by namespace, run and generation. STATUS is running (no run-end \
            record yet), succeeded, failed or cancelled; ENDED is the run-end time; SWEPT says \
            whether its memo was swept (then it holds no entries). A swept generation is listed \
            while its sweep record is on disk (compaction drops most of them).

            --json: one object per line with namespace, run, generation, status, endTime and \
            endTimeMs (null while running), entries, valueBytes, swept, sweptTime and sweptTimeMs \
            (null unless swept).

            Read-only; a ledger that a live process has open is not read unless --live is given.

            In place of the directory, a PostgreSQL URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, \
            or postgres://USER@/DATABASE?host=/socket/dir) lists the memo in that database (schema \
            --schema); a database keeps no swept generations, so SWEPT is always no there.

            \(ExitCodes.helpText)
            """)

    @OptionGroup var options: InspectOptions

    @Option(help: "Only the runs of this namespace (\"\" is the default namespace).")
    var namespace: String?

    @Flag(help: "Read the ledger even though a live process has it open (its memo may be changing there).")
    var live = false

    @OptionGroup var database: DatabaseOptions

    func run() async throws {
        try await CommandFailure.reporting(json: options.json) {
            if case .database(let url) = LedgerLocation(options.dir) { return try await runsInDatabase(url) }
            return try runs()
        }
    }

    /// One run generation, as both forms list it.
    struct Row {
        var key: MemoReplay.GenerationKey
        var statusName: String
        var endTimeMilliseconds: UInt64?
        var entryCount: Int
        var valueBytes: Int
        var sweptTimeMilliseconds: UInt64?
    }

    private func runs() throws -> Int32 {
        let replay = try MemoReplay.read(options.dir, command: "runs", allowLive: live)
        let rows = replay.generations.keys.filter { key in namespace.map { MemoReplay.same(key.namespace, $0) } ?? true }
            .sorted().map { key in
            let generation = replay.generations[key]!
            return Row(key: key, statusName: generation.statusName, endTimeMilliseconds: generation.endTimeMilliseconds,
                       entryCount: generation.entryCount, valueBytes: generation.valueBytes,
                       sweptTimeMilliseconds: generation.sweptTimeMilliseconds)
        }
        return report(rows)
    }

    private func runsInDatabase(_ url: String) async throws -> Int32 {
        let opened = try await DatabaseLedger.open(url, schema: database.schema)
        defer { opened.close() }
        let rows = try await opened.store.runs(RunQuery(namespace: namespace)).map { info in
            Row(key: MemoReplay.GenerationKey(namespace: info.run.namespace, run: info.run.run, generation: info.generation),
                statusName: info.status?.description ?? "running", endTimeMilliseconds: info.endTimeMilliseconds,
                entryCount: info.entryCount, valueBytes: info.valueBytes, sweptTimeMilliseconds: nil)
        }.sorted { $0.key < $1.key }
        return report(rows)
    }

    private func report(_ rows: [Row]) -> Int32 {
        if options.json {
            for row in rows { print(Self.json(row).rendered()) }
            return ExitCodes.success
        }
        guard !rows.isEmpty else {
            print("no runs")
            return ExitCodes.success
        }
        var table = TextTable(["NAMESPACE", "RUN", "GENERATION", "STATUS", "ENDED", "ENTRIES", "BYTES", "SWEPT"],
                              leftAligned: [0, 1, 3, 4, 7])
        for row in rows {
            table.add([TextFormat.plain(row.key.namespace), TextFormat.plain(row.key.run), "\(row.key.generation)",
                       row.statusName, row.endTimeMilliseconds.map(TextFormat.time) ?? "",
                       "\(row.entryCount)", "\(row.valueBytes)",
                       row.sweptTimeMilliseconds == nil ? "no" : "yes"])
        }
        print(table.render())
        return ExitCodes.success
    }

    static func json(_ row: Row) -> JSONValue {
        func time(_ name: String, _ value: UInt64?) -> [(String, JSONValue)] {
            [(name, value.map { .string(TextFormat.time($0)) } ?? .null), (name + "Ms", .optional(value))]
        }
        return .object(
            [("namespace", .string(row.key.namespace)), ("run", .string(row.key.run)), ("generation", .unsigned(row.key.generation)),
             ("status", .string(row.statusName))]
                + time("endTime", row.endTimeMilliseconds)
                + [("entries", .int(row.entryCount)), ("valueBytes", .int(row.valueBytes)),
                   ("swept", .bool(row.sweptTimeMilliseconds != nil))]
                + time("sweptTime", row.sweptTimeMilliseconds))
    }
}

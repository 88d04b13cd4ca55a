import ArgumentParser
import OnceLedger
import OnceLedgerFormat

/// `onceledger runs DIR [--namespace NS] [--json]`: one row per run generation of the
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

            \(ExitCodes.helpText)
            """)

    @OptionGroup var options: InspectOptions

    @Option(help: "Only the runs of this namespace (\"\" is the default namespace).")
    var namespace: String?

    @Flag(help: "Read the ledger even though a live process has it open (its memo may be changing there).")
    var live = false

    func run() async throws {
        try await CommandFailure.reporting(json: options.json) { try runs() }
    }

    private func runs() throws -> Int32 {
        let replay = try MemoReplay.read(options.dir, command: "runs", allowLive: live)
        let rows = replay.generations.keys.filter { namespace == nil || $0.namespace == namespace }.sorted()
        if options.json {
            for key in rows { print(Self.json(key, replay.generations[key]!).rendered()) }
            return ExitCodes.success
        }
        guard !rows.isEmpty else {
            print("no runs")
            return ExitCodes.success
        }
        var table = TextTable(["NAMESPACE", "RUN", "GENERATION", "STATUS", "ENDED", "ENTRIES", "BYTES", "SWEPT"],
                              leftAligned: [0, 1, 3, 4, 7])
        for key in rows {
            let generation = replay.generations[key]!
            table.add([TextFormat.plain(key.namespace), TextFormat.plain(key.run), "\(key.generation)",
                       generation.statusName, generation.endTimeMilliseconds.map(TextFormat.time) ?? "",
                       "\(generation.entryCount)", "\(generation.valueBytes)",
                       generation.sweptTimeMilliseconds == nil ? "no" : "yes"])
        }
        print(table.render())
        return ExitCodes.success
    }

    static func json(_ key: MemoReplay.GenerationKey, _ generation: MemoReplay.Generation) -> JSONValue {
        func time(_ name: String, _ value: UInt64?) -> [(String, JSONValue)] {
            [(name, value.map { .string(TextFormat.time($0)) } ?? .null), (name + "Ms", .optional(value))]
        }
        return .object(
            [("namespace", .string(key.namespace)), ("run", .string(key.run)), ("generation", .unsigned(key.generation)),
             ("status", .string(generation.statusName))]
                + time("endTime", generation.endTimeMilliseconds)
                + [("entries", .int(generation.entryCount)), ("valueBytes", .int(generation.valueBytes)),
                   ("swept", .bool(generation.sweptTimeMilliseconds != nil))]
                + time("sweptTime", generation.sweptTimeMilliseconds))
    }
}

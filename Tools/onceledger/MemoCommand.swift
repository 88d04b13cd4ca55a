import ArgumentParser
import Foundation
import OnceLedger
import OnceLedgerFormat

/// `onceledger memo DIR RUN [--namespace NS] [--step N] [--json]`: the memo entries of
/// one run, read-only.
struct MemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memo",
        abstract: "List a run's memo entries: step, name, input digest, value bytes.",
        discussion: """
            Every generation of the run that holds entries, sorted by generation, step and name \
            (`onceledger runs` lists the generations). INPUT is the SHA-256 input digest stored \
            with the value (hex), or "-" for none.

            --json: one object per line with namespace, run, generation, step, name, inputDigest \
            (hex, or null), time and timeMs, valueBytes, and value with valueEncoding: "utf8" \
            when the value is valid UTF-8 (a Codable value is JSON text), else "base64".

            Read-only; a ledger that a live process has open is not read unless --live is given.

            \(ExitCodes.helpText)
            """)

    @OptionGroup var options: InspectOptions

    @Argument(help: "The run id.")
    var run: String

    @Option(help: "The run's namespace (default: the default namespace, \"\").")
    var namespace: String = ""

    @Option(help: "Only the entries of this step.")
    var step: String?

    @Flag(help: "Read the ledger even though a live process has it open (its memo may be changing there).")
    var live = false

    func validate() throws {
        guard !run.isEmpty else { throw ValidationError("the run id must not be empty") }
        for (text, max, what) in [(run, FormatLimits.runBytesMax, "run id"), (namespace, FormatLimits.namespaceBytesMax, "namespace"),
                                  (step ?? "", FormatLimits.stepBytesMax, "step")] where text.utf8.count > max {
            throw ValidationError("the \(what) is \(text.utf8.count) bytes; the limit is \(max)")
        }
    }

    func run() async throws {
        try await CommandFailure.reporting(json: options.json) { try memo() }
    }

    /// Byte order of the UTF-8, for listing steps, names and namespaces.
    private static func utf8Precedes(_ a: String, _ b: String) -> Bool {
        Array(a.utf8).lexicographicallyPrecedes(Array(b.utf8))
    }

    /// "; run r has memo entries in namespace ns (pass --namespace ns)" when runs of that id
    /// hold entries in other namespaces: a run asked for without its namespace is the likely slip.
    static func otherNamespaces(of run: String, besides namespace: String, in replay: MemoReplay) -> String {
        let others = Set(replay.generations.filter { key, generation in
            MemoReplay.same(key.run, run) && !MemoReplay.same(key.namespace, namespace) && !generation.entries.isEmpty
        }.keys.map { MemoReplay.Text($0.namespace) }).map(\.string).sorted(by: utf8Precedes)
        guard !others.isEmpty else { return "" }
        // `plain` quotes what a shell would split or drop, the default namespace "" too.
        let listed = others.prefix(3).map(TextFormat.plain).joined(separator: ", ")
        let more = others.count > 3 ? " and \(others.count - 3) more" : ""
        return "; run \(TextFormat.plain(run)) has memo entries in namespace\(others.count == 1 ? "" : "s") \(listed)\(more)"
            + " (pass --namespace \(TextFormat.plain(others[0])))"
    }

    private func memo() throws -> Int32 {
        let replay = try MemoReplay.read(options.dir, command: "memo", allowLive: live, keepValuesOf: (namespace, run))
        var rows: [(UInt64, MemoReplay.Entry)] = []
        for key in replay.generations.keys.filter({ MemoReplay.same($0.namespace, namespace) && MemoReplay.same($0.run, run) })
            .sorted() {
            let generation = replay.generations[key]!
            for stepName in generation.entries.keys.sorted(by: { Self.utf8Precedes($0.string, $1.string) })
            where step.map({ MemoReplay.same($0, stepName.string) }) ?? true {
                let names = generation.entries[stepName]!
                for name in names.keys.sorted(by: { Self.utf8Precedes($0.string, $1.string) }) {
                    rows.append((key.generation, names[name]!))
                }
            }
        }
        let runName = MemoRun(namespace: namespace, run: run).description
        if options.json {
            for (generation, entry) in rows { print(Self.json(namespace: namespace, run: run, generation: generation, entry).rendered()) }
            return ExitCodes.success
        }
        guard !rows.isEmpty else {
            print("no memo entries for run \(TextFormat.plain(runName))" + (step.map { " step \(TextFormat.plain($0))" } ?? "")
                  + Self.otherNamespaces(of: run, besides: namespace, in: replay))
            return ExitCodes.success
        }
        var table = TextTable(["GENERATION", "STEP", "NAME", "INPUT", "BYTES", "VALUE"], leftAligned: [1, 2, 3, 5])
        for (generation, entry) in rows {
            table.add(["\(generation)", TextFormat.plain(entry.step), TextFormat.plain(entry.name),
                       entry.inputDigest.map { String(Hex.string($0).prefix(16)) + "…" } ?? "-",
                       "\(entry.valueBytes)", TextFormat.bytes(entry.value ?? [], limit: 60)])
        }
        print(table.render())
        return ExitCodes.success
    }

    static func json(namespace: String, run: String, generation: UInt64, _ entry: MemoReplay.Entry) -> JSONValue {
        let value = entry.value ?? []
        let text = String(validating: value, as: UTF8.self)
        return .object([
            ("namespace", .string(namespace)), ("run", .string(run)), ("generation", .unsigned(generation)),
            ("step", .string(entry.step)), ("name", .string(entry.name)),
            ("inputDigest", entry.inputDigest.map { .string(Hex.string($0)) } ?? .null),
            ("time", .string(TextFormat.time(entry.timeMilliseconds))), ("timeMs", .unsigned(entry.timeMilliseconds)),
            ("valueBytes", .int(entry.valueBytes)),
            ("value", .string(text ?? Data(value).base64EncodedString())),
            ("valueEncoding", .string(text == nil ? "base64" : "utf8")),
        ])
    }
}

import Foundation
import OnceLedgerFormat

/// A run generation's journal, taken out of the ledger: the audit trail of every
/// non-deterministic decision the run made, and what `JournalReplayer` replays workflow
/// code against (README "Replay journal").
///
/// As text it is JSON lines (`jsonLines()`, `init(jsonLines:)`, `Spec/FORMAT.md` §10.5): a
/// header line, then one line per recorded position, in order:
///
/// ```
/// {"format":"onceledger-journal","version":1,"namespace":"","run":"order-42","generation":7,"status":"succeeded","endTime":1733476800000}
/// {"position":0,"kind":"step","name":"llm.summarize","epoch":0,"inputDigest":"9f1c…","time":1733476790000,"output":{"text":"…"}}
/// ```
///
/// `output` is the recorded output as it is (JSON), always the line's last field; an output
/// that is not JSON is written as `outputBase64` instead.
public struct JournalExport: Sendable, Hashable {
    public var run: MemoRun
    public var generation: UInt64
    /// How the run ended; nil while it runs.
    public var status: RunStatus?
    public var endTimeMilliseconds: UInt64?
    public var records: [JournalRecord]

    public init(run: MemoRun, generation: UInt64, status: RunStatus?, endTimeMilliseconds: UInt64?, records: [JournalRecord]) {
        self.run = run
        self.generation = generation
        self.status = status
        self.endTimeMilliseconds = endTimeMilliseconds
        self.records = records
    }

    static let format = "onceledger-journal"
    static let version = 1

    /// The export as JSON lines, each ending in a newline.
    public func jsonLines() -> String {
        var text = "{\"format\":\(JSONText.string(JournalExport.format)),\"version\":\(JournalExport.version)"
        text += ",\"namespace\":\(JSONText.string(run.namespace)),\"run\":\(JSONText.string(run.run))"
        text += ",\"generation\":\(generation),\"status\":\(status.map { JSONText.string($0.description) } ?? "null")"
        text += ",\"endTime\":\(endTimeMilliseconds.map(String.init) ?? "null")}\n"
        for record in records { text += JournalExport.line(record) + "\n" }
        return text
    }

    /// One record as a JSON line (no newline): `onceledger journal --json` prints these.
    public static func line(_ record: JournalRecord) -> String {
        var text = "{\"position\":\(record.position),\"kind\":\(JSONText.string(record.entry.kind.description))"
        text += ",\"name\":\(JSONText.string(record.entry.nameText)),\"epoch\":\(record.entry.epoch)"
        text += ",\"inputDigest\":\(record.inputDigest.map { JSONText.string(Hex.string($0)) } ?? "null")"
        text += ",\"time\":\(record.timeMilliseconds)"
        if JSONText.isJSON(record.entry.output) {
            text += ",\"output\":" + String(decoding: record.entry.output, as: UTF8.self) + "}"
        } else {
            text += ",\"outputBase64\":\(JSONText.string(Data(record.entry.output).base64EncodedString()))}"
        }
        return text
    }

    /// Reads an export from its file's bytes (`Data(contentsOf:)`): `.invalidArgument` if they
    /// are not UTF-8, else as `init(jsonLines:)`.
    public init(jsonLinesBytes bytes: some Collection<UInt8>) throws {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw LedgerError(.invalidArgument, "the journal export is not UTF-8 text (an export is JSON lines)")
        }
        try self.init(jsonLines: text)
    }

    /// Reads an export written by `jsonLines()`. Throws `.invalidArgument` naming the line
    /// for anything else.
    public init(jsonLines text: String) throws {
        // "\r\n" is one Character: a file with CRLF line ends splits at it too.
        var lines = text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" })[...]
        guard let headerLine = lines.popFirst() else { throw JournalExport.bad(1, "the export is empty") }
        let header = try JournalExport.object(headerLine, line: 1)
        guard header["format"] as? String == JournalExport.format, header["version"] as? Int == JournalExport.version else {
            throw JournalExport.bad(1, "the first line is not a version \(JournalExport.version) \(JournalExport.format) header")
        }
        guard let namespace = header["namespace"] as? String, let run = header["run"] as? String,
              let generation = JournalExport.unsigned(header["generation"])
        else { throw JournalExport.bad(1, "the header needs namespace, run and generation") }
        self.run = MemoRun(namespace: namespace, run: run)
        self.generation = generation
        if let name = header["status"] as? String {
            guard let status = RunStatus.allCases.first(where: { $0.description == name }) else {
                throw JournalExport.bad(1, "status \"\(name)\" is none of \(RunStatus.allCases.map { "\"\($0)\"" }.joined(separator: ", ")), or null")
            }
            self.status = status
        } else if header["status"] == nil || header["status"] is NSNull {
            self.status = nil
        } else {
            throw JournalExport.bad(1, "status is not a string or null")
        }
        self.endTimeMilliseconds = JournalExport.unsigned(header["endTime"])
        if endTimeMilliseconds == nil, let value = header["endTime"], !(value is NSNull) {
            throw JournalExport.bad(1, "endTime is not milliseconds (an unsigned integer) or null")
        }
        var records: [JournalRecord] = []
        for (index, line) in lines.enumerated() {
            let number = index + 2
            let fields = try JournalExport.object(line, line: number)
            guard let position = JournalExport.unsigned(fields["position"]), position == UInt64(records.count),
                  let kindName = fields["kind"] as? String, let kind = JournalEntry.Kind(name: kindName),
                  let name = fields["name"] as? String, let epoch = JournalExport.unsigned(fields["epoch"]),
                  epoch <= UInt64(UInt32.max), let time = JournalExport.unsigned(fields["time"])
            else { throw JournalExport.bad(number, "a record needs position (in order from 0), kind, name, epoch and time") }
            var digest: [UInt8]?
            if let hex = fields["inputDigest"] as? String {
                guard let bytes = Hex.bytes(hex), bytes.count == 32 else {
                    throw JournalExport.bad(number, "inputDigest is not 64 hex digits")
                }
                digest = bytes
            } else if let value = fields["inputDigest"], !(value is NSNull) {
                throw JournalExport.bad(number, "inputDigest is not 64 hex digits or null")
            }
            let output: [UInt8]
            if let base64 = fields["outputBase64"] as? String {
                guard let data = Data(base64Encoded: base64) else { throw JournalExport.bad(number, "outputBase64 is not base64") }
                output = Array(data)
            } else if let range = line.range(of: ",\"output\":"), line.hasSuffix("}") {
                // The output's own bytes, as recorded: the text between the key and the line's
                // last brace — one JSON value only if `output` is the last field.
                let raw = Data(line[range.upperBound..<line.index(before: line.endIndex)].utf8)
                guard fields["output"] != nil,
                      (try? JSONSerialization.jsonObject(with: raw, options: .fragmentsAllowed)) != nil else {
                    throw JournalExport.bad(number, "output must be the record's last field (a tool that reorders or reformats the lines breaks this)")
                }
                output = Array(raw)
            } else {
                throw JournalExport.bad(number, "a record needs output (last) or outputBase64")
            }
            let entry = JournalEntry(kind: kind, epoch: UInt32(epoch), position: position, name: name, output: output)
            do { try entry.validate() } catch { throw JournalExport.bad(number, "\(error)") }
            records.append(JournalRecord(position: position, entry: entry, inputDigest: digest, timeMilliseconds: time))
        }
        self.records = records
    }

    private static func object(_ line: Substring, line number: Int) throws -> [String: Any] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw bad(number, "not a JSON object")
        }
        return object
    }

    private static func unsigned(_ value: Any?) -> UInt64? {
        guard let number = value as? NSNumber else { return nil }
        return UInt64(number.stringValue)
    }

    private static func bad(_ line: Int, _ why: String) -> LedgerError {
        LedgerError(.invalidArgument, "line \(line) of the journal export: \(why)")
    }
}

extension Ledger {
    /// The journal of `run`'s `generation` (default: the latest the ledger holds) as an
    /// export. Throws `.invalidArgument` if the ledger holds no such generation.
    public func exportJournal(run: String, namespace: String = "", generation: UInt64? = nil) async throws -> JournalExport {
        let memoRun = MemoRun(namespace: namespace, run: run)
        try memoRun.validate()
        let infos = try await store.runs(RunQuery(namespace: namespace, run: run))
        guard let info = generation.map({ wanted in infos.first { $0.generation == wanted } }) ?? infos.last else {
            throw LedgerError(.invalidArgument,
                              "the ledger holds no journal of run \(memoRun)\(generation.map { " generation \($0)" } ?? "") (never recorded, or swept); `onceledger runs` lists what it holds")
        }
        let records = try await Journal.records(store: store, run: memoRun, generation: info.generation)
        return JournalExport(run: memoRun, generation: info.generation, status: info.status,
                             endTimeMilliseconds: info.endTimeMilliseconds, records: records)
    }
}

/// Runs workflow code against an exported journal — yesterday's production runs in `swift
/// test` — and fails instead of executing anything new.
///
/// ```swift
/// @Test func theNewCodeReplaysYesterdaysRuns() async throws {
///     for file in exportFiles {
///         let export = try JournalExport(jsonLinesBytes: Data(contentsOf: URL(fileURLWithPath: file)))
///         _ = try await JournalReplayer.replay(export) { journal in try await agentLoop(journal) }
///     }
/// }
/// ```
///
/// Every step, `now`/`uuid`/`random`, `patched` and effect returns what the export recorded
/// at its position; a step the export does not hold throws `.journalDivergence`
/// (`would-execute`) without running its body — no model is called, no effect happens — and
/// a recorded step the code asks for differently throws it (`mismatch`), as in production.
/// When the workflow returns, recorded positions it never reached throw it (`unreached`).
/// `finish` writes nothing. A `patched` asked past the end of a run that ended answers false
/// (the run ended on the old path); past the end of a run still running it throws
/// `would-execute`, as production would record the marker and go on.
public enum JournalReplayer {
    public static func replay<Result>(_ export: JournalExport,
                                      _ workflow: (Journal) async throws -> Result) async throws -> Result {
        // Positions 0, 1, … in order, as the text reader requires: a replay stops at the first
        // free position, so records past a gap would be neither replayed nor reported.
        for (index, record) in export.records.enumerated() where record.position != UInt64(index) {
            throw LedgerError(.invalidArgument,
                              "the export's record \(index) is at position \(record.position); an export holds positions 0, 1, … in order")
        }
        let ledger = Ledger.inMemory(clock: { export.endTimeMilliseconds ?? export.records.last?.timeMilliseconds ?? 0 })
        defer { try? ledger.close() }
        let generation = try await ledger.store.memoGeneration(of: export.run)
        let journal = Journal(run: export.run, generation: generation,
                              limits: JournalLimits(entriesMax: .max, bytesMax: .max), ledger: ledger, replayOnly: true,
                              replayedRunEnded: export.status != nil, namedGeneration: export.generation)
        for record in export.records {
            var entry = record.entry
            entry.position = record.position
            try await ledger.store.memoPut(MemoPutRequest(
                key: journal.memoKey(record.position), value: entry.encode(), inputDigest: record.inputDigest,
                timeMilliseconds: record.timeMilliseconds))
        }
        let result = try await workflow(journal)
        let unreached = try await journal.unreachedPositions()
        if let first = unreached.first {
            throw journal.divergence(.unreached, at: journal.position, recorded: first.step, requested: nil,
                                     unreached: unreached.map(\.position))
        }
        return result
    }
}

/// JSON text for the export and the tools: strings escaped per RFC 8259.
enum JSONText {
    static func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let s where s.value < 0x20:
                let hex = String(s.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// Whether `bytes` are one JSON value on one line (so an export line can hold them as they are).
    static func isJSON(_ bytes: [UInt8]) -> Bool {
        guard !bytes.isEmpty, !bytes.contains(0x0A), !bytes.contains(0x0D) else { return false }
        return (try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])) != nil
    }
}

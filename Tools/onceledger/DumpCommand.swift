import ArgumentParser
import OnceLedger
import OnceLedgerFormat

/// `onceledger dump DIR [--json] [--key K] [--kind NAME…] [--since SEQ]`: every record
/// in order, as `name=value` lines or JSON Lines, read-only (no lock taken).
///
/// Order: the newest snapshot's items first (marked as such; they have no sequence
/// number), then every valid record of every segment in sequence order, including the
/// records the snapshot covers that are still on disk (marked `covered-by-snapshot`: they
/// were checked but are not replayed). A torn tail is not records: it is reported after
/// the last record. A damaged ledger is dumped up to the first problem, which is then
/// reported on standard error with exit code 4.
struct DumpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Print every record in order (and the snapshot's items), as text or JSON lines.",
        discussion: """
            Text: one line per record, `seq=… segment=… offset=… kind=…` followed by the body's \
            fields (texts quoted; receipts and values as UTF-8 text when valid, else hex:…) and \
            the frame's acked-through, batch-end flag and checksum. Snapshot items come first, as \
            `snapshot=… item=…` lines. A summary line starting with `--` ends the text output.

            --json: one JSON object per line. Records: source "log", seq, segment, offset, kind, \
            key (for kinds that have one), the body's fields (times as ISO 8601 plus a …Ms number; \
            byte strings with an …Encoding of "utf8" or "hex"), bodyBytes, ackedThrough, \
            batchEnd, checksum, previousChain, coveredBySnapshot. Snapshot items: source \
            "snapshot", snapshot (file name), item (index), seq null, kind, and the fields.

            A ledger that a live process has open is not read unless --live is given.

            \(ExitCodes.helpText)
            """)

    @OptionGroup var options: InspectOptions

    @Option(help: "Only records and snapshot items of this idempotency key.")
    var key: String?

    @Option(help: ArgumentHelp(
        "Only records and items of this kind; repeat for several. A name (intent, completion, release, resolve, forget, memo-put, journal-entry, run-terminal, snapshot-marker, checkpoint, entry-state, seal, memo-entry, run-end, memo-sweep, opaque) or a number.",
        valueName: "kind"))
    var kind: [String] = []

    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Only records with a sequence number of at least SEQ (snapshot items, which have none, are left out).",
        valueName: "seq"), transform: NumberArgument.unsigned)
    var since: UInt64?

    @Flag(help: "Read the ledger even though a live process has it open (the newest records may be a batch being written).")
    var live = false

    func validate() throws {
        for name in kind where DumpCommand.parseKind(name) == nil {
            throw ValidationError(
                "unknown record kind \"\(name)\"; use one of \(RecordKind.known.map(\.name).joined(separator: ", ")) or a number such as 7")
        }
        if let key { try AuditArguments.validateKey(key, option: "--key") }
    }

    static func parseKind(_ text: String) -> RecordKind? {
        if let kind = RecordKind(name: text.lowercased()) { return kind }
        if text.lowercased().hasPrefix("0x"), let raw = UInt16(text.dropFirst(2), radix: 16), raw != 0 {
            return RecordKind(rawValue: raw)
        }
        if let raw = UInt16(text), raw != 0 { return RecordKind(rawValue: raw) }
        return nil
    }

    func run() async throws {
        try await CommandFailure.reporting(json: options.json) { try dump() }
    }

    private func dump() throws -> Int32 {
        let directory = options.dir
        _ = try LedgerInspection.requireLedger(directory)
        try LiveLedgerPolicy.check(directory, command: "dump", allowLive: live)
        let kinds = Set(kind.compactMap(DumpCommand.parseKind))
        var shownRecords = 0
        var shownItems = 0
        var malformed = 0
        let tokenScope = LedgerInspection.tokenScope(directory)
        let inspection = try LedgerInspection.inspect(directory) { visit in
            switch visit {
            case .item(let index, let item, let snapshotName):
                guard since == nil, kinds.isEmpty || kinds.contains(item.kind) else { return }
                let decoded = RecordDescription.decode(kind: item.kind, body: item.body, tokenScope: tokenScope)
                if let key, DumpCommand.key(of: decoded) != key { return }
                if case .fields = decoded {} else { malformed += 1 }
                shownItems += 1
                print(options.json
                      ? Self.itemJSON(index: index, item: item, snapshotName: snapshotName, decoded: decoded).rendered()
                      : Self.itemText(index: index, item: item, snapshotName: snapshotName, decoded: decoded))
            case .record(let record, let covered):
                guard since.map({ record.header.sequence >= $0 }) ?? true,
                      kinds.isEmpty || kinds.contains(record.header.kind) else { return }
                let decoded = RecordDescription.decode(kind: record.header.kind, body: record.body, tokenScope: tokenScope)
                if let key, DumpCommand.key(of: decoded) != key { return }
                if case .fields = decoded {} else { malformed += 1 }
                shownRecords += 1
                print(options.json
                      ? Self.recordJSON(record, covered: covered, decoded: decoded).rendered()
                      : Self.recordText(record, covered: covered, decoded: decoded))
            }
        }
        if !options.json {
            var footer = "-- shown: \(shownRecords) of \(inspection.recordCount) records, \(shownItems) of \(inspection.report.snapshot?.itemCount ?? 0) snapshot items; tail: "
            if let torn = inspection.tornTail {
                footer += "torn at segment \(torn.segment) offset \(torn.offset) (\(TextFormat.plural(Int(torn.byteCount), "byte")) from sequence \(torn.expectedSequence) on, never acknowledged; the next open cuts them)"
            } else if inspection.refused {
                footer += "not read past the first problem (see the error)"
            } else {
                footer += inspection.tailState
            }
            print(footer)
        } else if let torn = inspection.tornTail {
            StandardError.write("note: the log ends in a torn tail at segment \(torn.segment) offset \(torn.offset) (\(TextFormat.plural(Int(torn.byteCount), "byte")) from sequence \(torn.expectedSequence) on, never acknowledged; the next open cuts them).\n")
        }
        if inspection.refused, let problem = inspection.problem {
            throw CommandFailure(
                ExitCodes.code(for: problem),
                "the ledger is damaged; records are shown up to the first problem: "
                    + CommandFailure.describe(problem, relativeTo: directory)
                    + "\nRun `onceledger verify \(directory)` for the full report; `onceledger salvage` copies what is recoverable to a new directory.",
                code: problem.code.rawValue)
        }
        if let problem = inspection.stateProblem {
            throw CommandFailure(
                ExitCodes.code(for: problem),
                "the ledger is damaged: " + CommandFailure.describe(problem, relativeTo: directory)
                    + "\nRun `onceledger verify \(directory)` for the full report.",
                code: problem.code.rawValue)
        }
        if malformed > 0 {
            throw CommandFailure(
                ExitCodes.problemsLeft,
                "\(TextFormat.plural(malformed, "shown record or item has", "shown records or items have")) a body that does not decode (marked malformed=…); run `onceledger verify \(directory)`.",
                code: LedgerError.Code.malformedBody.rawValue)
        }
        return ExitCodes.success
    }

    static func key(of decoded: RecordDescription.Decoded) -> String? {
        guard case .fields(let fields) = decoded else { return nil }
        for (name, field) in fields where name == "key" {
            if case .text(let text) = field { return text }
        }
        return nil
    }

    // MARK: Text

    static func recordText(_ record: LocatedRecord, covered: Bool,
                           decoded: RecordDescription.Decoded) -> String {
        let header = record.header
        var parts = ["seq=\(header.sequence)", "segment=\(record.segment)", "offset=\(record.offset)",
                     "kind=\(header.kind)"]
        parts.append(bodyText(decoded, body: record.body))
        parts.append("acked=\(header.ackedThrough)")
        if header.flags & RecordHeader.flagBatchEnd != 0 { parts.append("batch-end") }
        parts.append("crc=\(hex32(header.checksum))")
        if covered { parts.append("covered-by-snapshot") }
        return parts.joined(separator: " ")
    }

    static func itemText(index: Int, item: SnapshotFile.Item, snapshotName: String,
                         decoded: RecordDescription.Decoded) -> String {
        "snapshot=\(snapshotName) item=\(index) kind=\(item.kind) " + bodyText(decoded, body: item.body)
    }

    static func bodyText(_ decoded: RecordDescription.Decoded, body: [UInt8]) -> String {
        switch decoded {
        case .fields(let fields): RecordDescription.human(fields)
        case .malformed(let reason): "malformed=\(TextFormat.quoted(reason)) body=hex:\(Hex.string(body.prefix(200)))\(body.count > 200 ? "… (\(body.count) bytes)" : "")"
        case .unknownKind: "unknown-kind body=hex:\(Hex.string(body.prefix(200)))\(body.count > 200 ? "… (\(body.count) bytes)" : "")"
        }
    }

    // MARK: JSON

    static func recordJSON(_ record: LocatedRecord, covered: Bool,
                           decoded: RecordDescription.Decoded) -> JSONValue {
        let header = record.header
        var members: [(String, JSONValue)] = [
            ("source", .string("log")), ("seq", .unsigned(header.sequence)), ("segment", .unsigned(record.segment)),
            ("offset", .unsigned(record.offset)), ("kind", .string(header.kind.name)),
        ]
        members += bodyJSON(decoded, body: record.body)
        members += [
            ("bodyBytes", .unsigned(UInt64(header.bodyBytes))), ("ackedThrough", .unsigned(header.ackedThrough)),
            ("batchEnd", .bool(header.flags & RecordHeader.flagBatchEnd != 0)),
            ("checksum", .string(hex32(header.checksum))), ("previousChain", .string(hex32(header.previousChain))),
            ("coveredBySnapshot", .bool(covered)),
        ]
        return .object(members)
    }

    static func itemJSON(index: Int, item: SnapshotFile.Item, snapshotName: String,
                         decoded: RecordDescription.Decoded) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("source", .string("snapshot")), ("snapshot", .string(snapshotName)), ("item", .int(index)),
            ("seq", .null), ("kind", .string(item.kind.name)),
        ]
        members += bodyJSON(decoded, body: item.body)
        members.append(("bodyBytes", .int(item.body.count)))
        return .object(members)
    }

    static func bodyJSON(_ decoded: RecordDescription.Decoded, body: [UInt8]) -> [(String, JSONValue)] {
        switch decoded {
        case .fields(let fields): RecordDescription.json(fields)
        case .malformed(let reason):
            [("malformed", .string(reason)), ("body", .string(Hex.string(body))), ("bodyEncoding", .string("hex"))]
        case .unknownKind:
            [("unknownKind", .bool(true)), ("body", .string(Hex.string(body))), ("bodyEncoding", .string("hex"))]
        }
    }
}

// Proves the journal's operator commands — `journal` (text and --json), `journal-export`,
// `journal-truncate` — and `dump`'s decoding of journal entries, on a real ledger built in a
// fresh temporary directory through `Ledger.journal` under a manual clock (so the output is
// deterministic): the whole text table is compared, JSON lines and the export are parsed back
// (the export with `JournalExport(jsonLines:)`, equal to the library's), the truncation is checked
// in the journal afterwards and refused without its confirmation flag (a usage error, exit 16);
// `verify` accepts a ledger holding a journal and `salvage` copies it position for position; and
// on a compacted ledger, whose snapshot holds the journal as a journal-positions hint (version 4,
// FORMAT §5.21), `verify`, `stat`, `dump`, `journal`, `journal-export` and `salvage` read every
// position as before compaction.
import Foundation
@testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerTestSupport
import Testing

private enum JournalFixture {
    /// 2023-11-14T22:13:20Z.
    static let start: UInt64 = 1_700_000_000_000

    /// Run "agent" (running): a step with an input, now, a patched marker, an effect.
    static func ledger(compacted: Bool = false) async throws -> String {
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("onceledger-journal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        let path = parent.appendingPathComponent("ledger").path
        let clock = ManualClock(start)
        let ledger = try Ledger.open(directory: path, clock: clock.function)
        let journal = try await ledger.journal(run: "agent")
        _ = try await journal.step("llm.summarize", input: "order 42") { "a summary" }
        clock.advance(1000)
        _ = try await journal.nowMilliseconds()
        _ = try await journal.patched("fix-1")
        _ = try await journal.effect("mail.send", input: 1) { _ in ["id": "m-1"] }
        if compacted { try await ledger.compact() }
        try ledger.close()
        try FileManager.default.removeItem(atPath: path + "/" + LedgerFileNames.lock)
        return path
    }

    static func cleanUp(_ path: String) {
        try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }
}

private func run(_ arguments: [String], in directory: String) throws -> CLI.Result {
    var result = try CLI.run(arguments.map { $0.replacingOccurrences(of: "$DIR", with: directory) })
    result.stdout = result.stdout.replacingOccurrences(of: directory, with: "$DIR")
    result.stderr = result.stderr.replacingOccurrences(of: directory, with: "$DIR")
    return result
}

@Suite struct JournalCommandTests {
    @Test func journalShowsEveryPositionAndJSONLinesParseBack() async throws {
        let path = try await JournalFixture.ledger()
        defer { JournalFixture.cleanUp(path) }
        let digest = Hex.string(SHA256.hash(try CanonicalEncoding.encode("order 42")).prefix(6))
        let digestOne = Hex.string(SHA256.hash(try CanonicalEncoding.encode(1)).prefix(6))
        let text = try run(["journal", "$DIR", "agent"], in: path)
        #expect(text.exitCode == 0, "\(text.stderr)")
        #expect(text.stdout == """
            run agent generation 1: running, 4 positions
            POS  KIND     NAME           EPOCH  INPUT          TIME                      OUTPUT
            ------------------------------------------------------------------------------------------
            0    step     llm.summarize      0  \(digest)…  2023-11-14T22:13:20.000Z  "a summary"
            1    now      now                0  -              2023-11-14T22:13:21.000Z  1700000001000
            2    patched  fix-1              0  -              2023-11-14T22:13:21.000Z  true
            3    effect   mail.send          0  \(digestOne)…  2023-11-14T22:13:21.000Z  {"id":"m-1"}

            """)

        let json = try run(["journal", "$DIR", "agent", "--json"], in: path)
        #expect(json.exitCode == 0)
        let rows = try json.stdout.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(rows.map { $0["kind"] as? String } == ["step", "now", "patched", "effect"])
        #expect((rows[3]["output"] as? [String: Any])?["id"] as? String == "m-1")

        let export = try run(["journal-export", "$DIR", "agent"], in: path)
        #expect(export.exitCode == 0)
        let parsed = try JournalExport(jsonLines: export.stdout)
        let ledger = try Ledger.openReadOnly(directory: path)
        #expect(try await parsed == ledger.exportJournal(run: "agent"))
        try ledger.close()

        let dump = try run(["dump", "$DIR"], in: path)
        #expect(dump.stdout.contains("journalKind=step journalPosition=0 journalEpoch=0 journalName=\"llm.summarize\""), "\(dump.stdout)")
    }

    @Test func journalTruncateNeedsConfirmationAndRecordsWhoAndWhy() async throws {
        let path = try await JournalFixture.ledger()
        defer { JournalFixture.cleanUp(path) }
        let refused = try run(["journal-truncate", "$DIR", "agent", "--from", "2", "--reason", "new path"], in: path)
        #expect(refused.exitCode == 16)

        let done = try run(["journal-truncate", "$DIR", "agent", "--from", "2", "--reason", "new path", "--actor", "ops",
                            "--i-understand-positions-are-rerecorded"], in: path)
        #expect(done.exitCode == 0, "\(done.stderr)")
        #expect(done.stdout.contains("truncated the journal of run agent generation 1 from position 2: 2 recorded positions freed, epoch 1"), "\(done.stdout)")
        #expect(done.stdout.contains("dropped 3: effect \"mail.send\"  (an effect that ran"), "\(done.stdout)")
        let after = try run(["journal", "$DIR", "agent", "--json"], in: path)
        let kinds = after.stdout.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["kind"] as? String
        }
        #expect(kinds == ["step", "now", "truncated", "truncated", "truncated"])
        // A reason is shown as text; one holding a terminal's escape sequence, as its length.
        let escape = try run(["journal-truncate", "$DIR", "agent", "--from", "4", "--reason", "\u{1b}[2Jgone", "--actor", "ops",
                              "--i-understand-positions-are-rerecorded"], in: path)
        #expect(escape.exitCode == 0, "\(escape.stderr)")
        let override = try run(["journal-truncate", "$DIR", "agent", "--from", "5", "--reason", "\u{202e}desrever", "--actor", "ops",
                                "--i-understand-positions-are-rerecorded"], in: path)
        #expect(override.exitCode == 0, "\(override.stderr)")
        let shown = try run(["journal", "$DIR", "agent"], in: path)
        #expect(shown.stdout.contains("new path") && !shown.stdout.contains("\u{1b}") && !shown.stdout.contains("\u{202e}"),
                "\(shown.stdout)")
    }

    /// An effect claimed at the position after the last recorded one and never journaled (the
    /// process died after `once` and before the journal entry): the truncation frees that position
    /// with a new epoch, so it must show the operator the charge that already happened.
    @Test func journalTruncateListsAnEffectThatRanButWasNeverJournaled() async throws {
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("onceledger-journal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        let path = parent.appendingPathComponent("ledger").path
        defer { JournalFixture.cleanUp(path) }
        let ledger = try Ledger.open(directory: path, clock: ManualClock(JournalFixture.start).function)
        let journal = try await ledger.journal(run: "agent")
        _ = try await journal.step("llm.plan") { "charge 42" }
        // The key the journal's effect at position 1 of generation 1 uses (FORMAT §10.3).
        _ = try await ledger.journalEffectOnce(IdempotencyKey("onceledger.journal/g\(journal.generation)/p1/agent"), as: String.self) { _ in "charged" }
        try ledger.close()
        try FileManager.default.removeItem(atPath: path + "/" + LedgerFileNames.lock)

        let done = try run(["journal-truncate", "$DIR", "agent", "--from", "1", "--reason", "new payment code", "--actor", "ops",
                            "--i-understand-positions-are-rerecorded"], in: path)
        #expect(done.exitCode == 0, "\(done.stderr)")
        #expect(done.stdout.contains("effect not journaled: key \"onceledger.journal/g1/p1/agent\" is done"), "\(done.stdout)")
    }

    @Test func salvageCopiesTheJournalAndVerifyAcceptsIt() async throws {
        let path = try await JournalFixture.ledger()
        defer { JournalFixture.cleanUp(path) }
        #expect(try run(["verify", "$DIR"], in: path).exitCode == 0)
        let target = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("salvaged").path
        let salvage = try CLI.run(["salvage", path, "--to", target])
        #expect(salvage.exitCode == 0, "\(salvage.stdout) \(salvage.stderr)")
        let before = try run(["journal", "$DIR", "agent", "--json"], in: path).stdout
        let after = try run(["journal", "$DIR", "agent", "--json"], in: target).stdout
        #expect(!before.isEmpty && after == before, "the salvaged ledger holds the same journal")
    }

    @Test func theToolsReadACompactedJournalAsBefore() async throws {
        let plain = try await JournalFixture.ledger()
        defer { JournalFixture.cleanUp(plain) }
        let path = try await JournalFixture.ledger(compacted: true)
        defer { JournalFixture.cleanUp(path) }
        let snapshot = try #require(try FileManager.default.contentsOfDirectory(atPath: path).first { $0.hasSuffix(".snap") })
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path + "/" + snapshot)))
        #expect(ByteReader.getInteger(bytes, at: 8, as: UInt16.self) == 4, "the journal is in a journal-positions hint")

        for command in [["verify", "$DIR"], ["stat", "$DIR"], ["dump", "$DIR"]] {
            let result = try run(command, in: path)
            #expect(result.exitCode == 0, "\(command): \(result.stdout) \(result.stderr)")
        }
        let dump = try run(["dump", "$DIR"], in: path).stdout
        #expect(dump.contains("llm.summarize") && dump.contains("mail.send"), "dump decodes the positions: \(dump)")
        for command in [["journal", "$DIR", "agent", "--json"], ["journal-export", "$DIR", "agent"]] {
            let compacted = try run(command, in: path)
            #expect(compacted.exitCode == 0, "\(command): \(compacted.stderr)")
            #expect(compacted.stdout == (try run(command, in: plain)).stdout, "\(command): the same as before compaction")
        }
        let target = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("salvaged").path
        let salvage = try CLI.run(["salvage", path, "--to", target])
        #expect(salvage.exitCode == 0, "\(salvage.stdout) \(salvage.stderr)")
        #expect(try run(["journal", "$DIR", "agent", "--json"], in: target).stdout
                == (try run(["journal", "$DIR", "agent", "--json"], in: plain)).stdout)
    }
}

// Proves the journal export and the replayer (`Ledger.exportJournal`, `JournalExport`,
// `JournalReplayer`) on both stores: an export written as JSON lines reads back equal (outputs
// byte for byte, JSON or not); replaying the code that recorded a run returns the run's result
// without running a body or an effect; a changed workflow fails with `.journalDivergence` —
// `would-execute` for a step past the export's end (its body never runs), `mismatch` for a
// changed step, `unreached` for a removed one; a damaged export is refused with the line named.
import Foundation
@testable import OnceLedger
import OnceLedgerFormat
import Testing
import OnceLedgerStoreContract

private func workflow(_ journal: Journal, _ bodies: Counter, extraStep: Bool = false, skipLast: Bool = false,
                      appendStep: Bool = false, model: String = "m-1") async throws -> String {
    let draft = try await journal.step("llm.draft", input: ["model": model]) {
        bodies.increment()
        return "draft"
    }
    let id = try await journal.uuid()
    if extraStep {
        _ = try await journal.step("llm.review", input: draft) {
            bodies.increment()
            return "reviewed"
        }
    }
    let sent = try await journal.effect("mail.send", input: draft) { _ in
        bodies.increment()
        return "sent"
    }
    if !skipLast {
        _ = try await journal.nowMilliseconds()
    }
    if appendStep {
        _ = try await journal.step("llm.followUp") {
            bodies.increment()
            return "more"
        }
    }
    try await journal.finish(.succeeded)
    return "\(draft) \(id) \(sent)"
}

@Suite struct JournalReplayerTests {
    @Test(arguments: BackendKind.allCases)
    func anExportRoundTripsAndReplaysWithoutRunningAnything(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        let bodies = Counter()
        let result = try await workflow(try await ledger.journal(run: "yesterday"), bodies)
        let raw = try await ledger.journal(run: "raw")
        _ = try await raw.step("bytes", input: 1) { "x" }
        #expect(bodies.count == 2)

        let export = try await ledger.exportJournal(run: "yesterday")
        #expect(export.status == .succeeded)
        #expect(export.records.count == 4)
        let text = export.jsonLines()
        #expect(text.split(separator: "\n").count == 5)
        #expect(text.contains("\"kind\":\"step\",\"name\":\"llm.draft\""), "\(text)")
        #expect(try JournalExport(jsonLines: text) == export)

        let replayed = try await JournalReplayer.replay(export) { journal in try await workflow(journal, bodies) }
        #expect(replayed == result)
        #expect(bodies.count == 2, "the replay ran no body and no effect")

        // Outputs that are not JSON round-trip as base64.
        var odd = try await ledger.exportJournal(run: "raw")
        odd.records[0].entry.output = [0xff, 0x00, 0x0a]
        #expect(odd.jsonLines().contains("outputBase64"))
        #expect(try JournalExport(jsonLines: odd.jsonLines()) == odd)
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func aChangedWorkflowFailsTheReplayInsteadOfExecuting(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        let bodies = Counter()
        _ = try await workflow(try await ledger.journal(run: "yesterday"), bodies)
        let export = try await ledger.exportJournal(run: "yesterday")
        let before = bodies.count

        for (change, reason, position) in [("appended", JournalDivergence.Reason.wouldExecute, UInt64(4)),
                                           ("inserted", .mismatch, 2), ("changed", .mismatch, 0),
                                           ("removed", .unreached, 3)] {
            do {
                _ = try await JournalReplayer.replay(export) { journal in
                    try await workflow(journal, bodies, extraStep: change == "inserted", skipLast: change == "removed",
                                       appendStep: change == "appended",
                                       model: change == "changed" ? "m-2" : "m-1")
                }
                Issue.record("the \(change) workflow replayed")
            } catch let error as LedgerError {
                #expect(error.code == .journalDivergence, "\(error)")
                #expect(error.journalDivergence?.reason == reason, "\(change): \(error)")
                #expect(error.journalDivergence?.position == position, "\(change): \(error)")
            }
        }
        #expect(bodies.count == before, "no body ran in any replay")
        try ledger.close()
    }

    @Test func aDamagedExportIsRefusedNamingTheLine() throws {
        let header = "{\"format\":\"onceledger-journal\",\"version\":1,\"namespace\":\"\",\"run\":\"r\",\"generation\":1,\"status\":null,\"endTime\":null}"
        for (text, line) in [("", 1), ("{}", 1), (header + "\nnot json", 2),
                             (header + "\n{\"position\":1,\"kind\":\"step\",\"name\":\"a\",\"epoch\":0,\"inputDigest\":null,\"time\":0,\"output\":1}", 2),
                             (header + "\n{\"position\":0,\"kind\":\"teleport\",\"name\":\"a\",\"epoch\":0,\"inputDigest\":null,\"time\":0,\"output\":1}", 2),
                             (header + "\n{\"position\":0,\"kind\":\"step\",\"name\":\"a\",\"epoch\":0,\"inputDigest\":\"00\",\"time\":0,\"output\":1}", 2)] {
            do {
                _ = try JournalExport(jsonLines: text)
                Issue.record("accepted \(text)")
            } catch let error as LedgerError {
                #expect(error.code == .invalidArgument && error.message.hasPrefix("line \(line) "), "\(error)")
            }
        }
    }
}

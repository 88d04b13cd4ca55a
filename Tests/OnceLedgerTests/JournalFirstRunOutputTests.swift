// Proves that a step's first run returns exactly what its replay returns, now that an output
// whose record reads back as itself (a printable-ASCII string without quotes or backslashes, an
// unsigned integer) is returned as computed instead of decoded from the bytes just written: for
// those outputs, for strings the encoder escapes or that are not ASCII, for an empty string,
// and for a `Codable` struct, on both stores, the first run's values equal the replay's, the
// replay runs no body, and the recorded bytes are the JSON the encoder writes. How: one journal
// records the steps, the ledger is reopened, a second journal of the run replays them.
import Foundation
@testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerStoreContract
import Testing

@Suite struct JournalFirstRunOutputTests {
    private struct Reply: Codable, Equatable, Sendable {
        var text: String
        var tokens: Int
    }

    private static let strings = ["a plain answer", "", "quote \" and backslash \\", "line\nbreak", "café ☕", "a/b"]

    private static func workflow(_ journal: Journal, _ bodies: Counter) async throws -> ([String], UInt64, Reply) {
        var texts: [String] = []
        for (index, text) in strings.enumerated() {
            texts.append(try await journal.step("text.\(index)") { () -> String in
                bodies.increment()
                return text
            })
        }
        let number = try await journal.step("number") { () -> UInt64 in
            bodies.increment()
            return UInt64.max
        }
        let reply = try await journal.step("reply") { () -> Reply in
            bodies.increment()
            return Reply(text: "hello", tokens: 3)
        }
        return (texts, number, reply)
    }

    @Test(arguments: BackendKind.allCases)
    func aFirstRunReturnsWhatItsReplayReturns(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        let bodies = Counter()
        let first = try await Self.workflow(try await ledger.journal(run: "r"), bodies)
        #expect(first.0 == Self.strings)
        #expect(first.1 == UInt64.max)
        #expect(first.2 == Reply(text: "hello", tokens: 3))
        #expect(bodies.count == Self.strings.count + 2)

        ledger = try harness.reopen(ledger)
        let replayed = try await Self.workflow(try await ledger.journal(run: "r"), bodies)
        #expect(replayed.0 == first.0 && replayed.1 == first.1 && replayed.2 == first.2)
        #expect(bodies.count == Self.strings.count + 2, "no body ran again")

        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let records = try await ledger.journalRecords(run: "r")
        for (index, text) in Self.strings.enumerated() {
            #expect(records[index].entry.output == Array(try encoder.encode(text)), "\(text)")
        }
        #expect(records[Self.strings.count].entry.output == Array(try encoder.encode(UInt64.max)))
        try ledger.close()
    }
}

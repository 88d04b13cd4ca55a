// Proves that an effect which ran but returned a receipt over `FormatLimits.receiptBytesMax` is
// recorded as done (with an empty receipt) and reported with `.limitExceeded`, so no later call
// — `.retry` included, and after a restart — runs (and pays for) it again: later calls return
// it as already done (raw bytes: empty; typed: `.receiptDecodingFailed` saying it has none).
// Runs the same calls on both backends and counts the effect's runs.
import Foundation
@testable import OnceLedger
import OnceLedgerFormat
import Testing
import OnceLedgerStoreContract

@Suite struct OversizedReceiptTests {
    @Test(arguments: BackendKind.allCases)
    func retryAfterAnOversizedReceiptNeverRunsTheEffectAgain(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        let paid = Counter()
        let reply = [UInt8](repeating: UInt8(ascii: "x"), count: 70_011)   // a long LLM reply
        let first = await ledgerError {
            try await ledger.onceBytes("llm-1", whenPending: .retry) { _ in
                paid.increment()
                return reply
            }
        }
        #expect(first?.code == .limitExceeded)
        #expect(first?.limit == "receiptBytesMax")
        #expect(first?.message.contains("recorded as done without its receipt") == true)
        #expect(first?.entry?.status == .done)
        #expect(paid.count == 1)
        for round in 0..<3 {
            if round == 2 { ledger = try harness.reopen(ledger) }
            let again = try await ledger.onceBytes("llm-1", whenPending: .retry) { _ in
                paid.increment()
                return reply
            }
            #expect(!again.wasPerformed)
            #expect(again.receipt == [])
            #expect(again.entry.status == .done)
        }
        // A typed caller is told the receipt is missing; the effect still does not run.
        let typed = await ledgerError {
            try await ledger.once("llm-1", as: String.self, whenPending: .retry) { _ in
                paid.increment()
                return "short"
            }
        }
        #expect(typed?.code == .receiptDecodingFailed)
        #expect(typed?.message.contains("no stored receipt") == true)
        #expect(paid.count == 1)
        #expect(try harness.keyRecords("llm-1").map(\.kind) == [.intent, .completion])
    }
}

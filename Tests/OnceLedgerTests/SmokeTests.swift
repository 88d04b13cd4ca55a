// Smoke: a once call performs, a second returns already-done with the stored receipt,
// on both backends; a reopen of the file backend keeps it done.
import Foundation
import OnceLedger
import OnceLedgerFormat
import Testing

@Suite struct SmokeTests {
    @Test func performsThenSkips() async throws {
        let directory = FileManager.default.temporaryDirectory.path + "/ol-smoke-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let ledger = try Ledger.open(directory: directory)
            let first = try await ledger.once("order-42", as: String.self) { context in
                #expect(context.attempt == 1)
                return "sent:\(context.token)"
            }
            #expect(first.wasPerformed)
            let second = try await ledger.once("order-42", as: String.self) { _ in
                Issue.record("must not run twice")
                return "again"
            }
            #expect(!second.wasPerformed)
            #expect(second.receipt == first.receipt)
            try ledger.close()
        }
        let reopened = try Ledger.open(directory: directory)
        defer { try? reopened.close() }
        #expect(reopened.entry("order-42")?.status == .done)
        let third = try await reopened.once("order-42", as: String.self) { _ in "x" }
        #expect(!third.wasPerformed)
    }
}

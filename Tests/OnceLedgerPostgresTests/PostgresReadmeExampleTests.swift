// Proves the README's "PostgreSQL store" example works as printed: the same lines, with the URL
// of the test server in place of the README's, run against it (a second run of the key is
// already done, with the first run's receipt).
import OnceLedger
import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import Testing

@Suite(.enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct PostgresReadmeExampleTests {
    @Test func theReadmeExampleRunsAgainstARealServer() async throws {
        let url = try PostgresTestServer.shared().url
        // README example begins (the URL aside)
        let store = try await PostgresStore.connect(url: url, schema: "readme_\(UInt32.random(in: 0...UInt32.max))")
        let ledger = Ledger(store: store)
        let outcome = try await ledger.once("charge-order-42", as: String.self) { context in
            "charged with idempotency key \(context.token)"   // call the payment provider here
        }
        // README example ends
        defer { try? ledger.close() }
        #expect(outcome.wasPerformed && outcome.receipt.hasSuffix(outcome.entry.token))
        let again = try await ledger.once("charge-order-42", as: String.self) { _ in "twice" }
        #expect(!again.wasPerformed && again.receipt == outcome.receipt)
    }
}

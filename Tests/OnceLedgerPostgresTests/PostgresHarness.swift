// Helpers of the PostgreSQL suites (no test here): a store on a schema of its own on the shared
// throw-away server (the requests, gates and counters the tests order races with are
// `OnceLedgerStoreContract`'s).
import Foundation
import OnceLedger
import OnceLedgerFormat
import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import OnceLedgerStoreContract
import Synchronization
import Testing

/// Stores on one fresh schema of the shared server: every test uses its own schema, so
/// tests run in parallel on one server without seeing each other.
struct PostgresHarness {
    let server: PostgresTestServer
    let schema: String

    init(name: String = #function) throws {
        server = try PostgresTestServer.shared()
        let clean = name.lowercased().filter { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") }.prefix(24)
        schema = "t_\(clean)_\(UInt32.random(in: 0...UInt32.max))"
    }

    /// The contract's view of this schema's stores (`OnceLedgerStoreContract`): several at once
    /// (other processes), `doneEntry` not answered (nil, the protocol's default).
    var underTest: StoreUnderTest { underTest(preparedStatements: true) }

    func underTest(preparedStatements: Bool) -> StoreUnderTest {
        StoreUnderTest(open: { try await self.open(preparedStatements: preparedStatements) },
                       waiterCount: { store, key in (store as? PostgresStore)?.waiterCount(key) ?? -1 },
                       twoStoresAtOnce: true, answersDoneEntries: false)
    }

    func open(lease: Duration = .seconds(30), connections: Int = 4, owner: String? = nil,
              preparedStatements: Bool = true) async throws -> PostgresStore {
        var configuration = PostgresStore.Configuration(
            url: try PostgresURL(server.url), schema: schema, lease: lease, connections: connections, owner: owner)
        configuration.preparedStatements = preparedStatements
        return try await PostgresStore.connect(configuration: configuration)
    }
}

// Shared setup of the multi-process and CLI tests on PostgreSQL: the server (the one
// ONCELEDGER_POSTGRES_URL names, else the throw-away cluster of `PostgresTestServer`), a
// schema of each test's own, and a store to check what the workers left.
import Foundation
import Logging
import OnceLedger
import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import PostgresNIO
import Synchronization
import Testing

enum ProcessTestSupport {
    /// The server this process's PostgreSQL tests share.
    static func server() throws -> PostgresTestServer {
        do {
            return try PostgresTestServer.shared()
        } catch {
            Issue.record("no PostgreSQL server for the multi-process tests: \(error)")
            throw error
        }
    }

    private static let counter = Atomic<Int>(0)

    /// A schema name no other test of this run uses: `mp_<label>_<pid>_<n>`.
    static func schema(_ label: String) -> String {
        "mp_\(label)_\(getpid())_\(counter.add(1, ordering: .relaxed).newValue)"
    }

    /// A store on `schema`, for a test's own checks (default lease).
    static func store(_ url: String, schema: String, lease: Duration = .seconds(30)) async throws -> PostgresStore {
        try await PostgresStore.connect(url: url, schema: schema, lease: lease)
    }

    /// Drops `schema` (a test's own) from the server of `url`, so a shared server named by
    /// ONCELEDGER_POSTGRES_URL is left as it was. Best effort.
    static func dropSchema(_ url: String, schema: String) async {
        guard let parsed = try? PostgresURL(url) else { return }
        var logger = Logger(label: "onceledger.tests.postgres")
        logger.logLevel = .critical
        guard let connection = try? await PostgresConnection.connect(
            configuration: try parsed.connectionConfiguration(), id: 1, logger: logger) else { return }
        _ = try? await connection.query(PostgresQuery(unsafeSQL: "DROP SCHEMA IF EXISTS \"\(schema)\" CASCADE"),
                                        logger: logger)
        try? await connection.close()
    }

    /// The worker arguments shared by every test: server, schema, effects file.
    static func workerArguments(url: String, schema: String, effects: String, keys: [String]) -> [String] {
        ["--url", url, "--schema", schema, "--effects", effects, "--keys", keys.joined(separator: ",")]
    }

    /// A receipt as `once(key, as: String.self)` stores it (JSON).
    static func receipt(_ text: String) -> [UInt8] { Array("\"\(text)\"".utf8) }
}

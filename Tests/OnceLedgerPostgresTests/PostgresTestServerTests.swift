// Proves the throw-away server the PostgreSQL tests run against works: `PostgresTestServer`
// starts a cluster (initdb into a temporary directory, Unix socket only; through runuser
// when root), and a client connects to it by the URL the helper gives and runs a query.
import Logging
import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import PostgresNIO
import Testing

@Suite(.enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct PostgresTestServerTests {
    @Test func aClientConnectsOverTheUnixSocketAndQueries() async throws {
        let server = try PostgresTestServer.shared()
        let url = try PostgresURL(server.url)
        let connection = try await PostgresConnection.connect(
            configuration: try url.connectionConfiguration(), id: 1, logger: Logger(label: "test"))
        defer { Task { try? await connection.close() } }
        var answer: Int?
        for try await (value) in try await connection.query("SELECT 41 + 1", logger: Logger(label: "test")).decode(Int.self) {
            answer = value
        }
        #expect(answer == 42)
    }
}

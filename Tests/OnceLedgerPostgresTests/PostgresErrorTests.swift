// Proves that bad input and faults reaching the PostgreSQL store give typed errors that say
// what to do, against a real server: a malformed URL and a bad schema name (.invalidArgument);
// a socket directory with no server (.databaseUnreachable); an unknown user
// (.databaseAuthentication); a missing database (.invalidArgument naming it); a user without
// the right to create the schema (.databasePermission); a schema written by a newer version
// (.unsupportedVersion, nothing changed); a store used after close (.closed). Also the URL
// parser's accepted spellings, the lost-connection messages (outcome unknown during a write),
// and that group commit sends concurrent requests in one batch.
import OnceLedger
import OnceLedgerFormat
@testable import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import PostgresNIO
import Synchronization
import Testing
import OnceLedgerStoreContract

struct PostgresURLTests {
    @Test func urlsParseTheWayLibpqReadsThem() throws {
        let tcp = try PostgresURL("postgres://app:s%40cret@db.internal:6543/orders?sslmode=require")
        #expect(tcp.host == "db.internal" && tcp.port == 6543 && tcp.username == "app" && tcp.password == "s@cret")
        #expect(tcp.database == "orders" && tcp.tls == .require && tcp.socketDirectory == nil)
        #expect(!tcp.redacted.contains("s@cret") && !tcp.redacted.contains("s%40cret"), "messages never carry the password")
        let socket = try PostgresURL("postgresql://app@/orders?host=/var/run/postgresql")
        #expect(socket.socketDirectory == "/var/run/postgresql" && socket.host == nil && socket.tls == .disable)
        let encoded = try PostgresURL("postgres://app@%2Ftmp%2Fpg/orders")
        #expect(encoded.socketDirectory == "/tmp/pg")
        for bad in ["mysql://app@host/db", "postgres://host/db", "postgres://app@host:99999/db",
                    "postgres://app@host/db?sslmode=maybe", "postgres://app@host/db?options=x", "postgres://app@/db"] {
            #expect(throws: LedgerError.self, "\(bad)") { try PostgresURL(bad) }
        }
    }

    /// A connection lost during a write leaves the outcome unknown, and the error says so
    /// (treat it like a crash); during a read it says nothing changed.
    @Test func aLostConnectionSaysWhetherTheOutcomeIsUnknown() throws {
        struct Reset: Error {}
        let url = try PostgresURL("postgres://app:pw@db.internal/orders")
        let write = try #require(PostgresErrors.map(Reset(), phase: .writing("a claim"), url: url) as? LedgerError)
        #expect(write.code == .connectionLost)
        #expect(write.message.contains("outcome is unknown") && write.message.contains("never reported done"))
        #expect(!write.message.contains("pw"), "the password is never in a message")
        let read = try #require(PostgresErrors.map(Reset(), phase: .reading("listing entries"), url: url) as? LedgerError)
        #expect(read.code == .connectionLost && read.message.contains("nothing was changed"))
        let connect = try #require(PostgresErrors.map(Reset(), phase: .connecting, url: url) as? LedgerError)
        #expect(connect.code == .databaseUnreachable && connect.message.contains("db.internal:5432"))
    }

    /// Group commit: requests that arrive while a batch is on the wire go out together in
    /// the next one (one statement, one commit), each caller getting its own answer.
    @Test func requestsQueuedBehindABatchGoOutInOneBatch() async throws {
        let entered = OnceLedgerStoreContract.Gate()
        let release = OnceLedgerStoreContract.Gate()
        let batches = Mutex<[[Int]]>([])
        let group = GroupCommit<Int, Int>(lanes: 1, batchMax: 100) { requests in
            batches.withLock { $0.append(requests) }
            if requests == [0] {
                entered.open()
                await release.wait()
            }
            return requests.map { $0 * 10 }
        }
        let first = Task { try await group.submit(0) }
        await entered.wait()
        let rest = (1...20).map { value in Task { try await group.submit(value) } }
        try await waitUntil("all 20 are queued") { group.queuedCount == 20 }
        release.open()
        #expect(try await first.value == 0)
        for (index, task) in rest.enumerated() { #expect(try await task.value == (index + 1) * 10) }
        let sent = batches.withLock { $0 }
        #expect(sent.count == 2 && sent[0] == [0] && Set(sent[1]) == Set(1...20))
    }
}

@Suite(.enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct PostgresErrorTests {
    func connectError(_ url: String, schema: String = "onceledger") async -> LedgerError? {
        await ledgerError { try await PostgresStore.connect(url: url, schema: schema) }
    }

    @Test func badInputIsRefusedBeforeConnecting() async throws {
        #expect(await connectError("http://nowhere")?.code == .invalidArgument)
        let server = try PostgresTestServer.shared()
        let badSchema = await connectError(server.url, schema: "Robert'); DROP TABLE x;--")
        #expect(badSchema?.code == .invalidArgument)
        #expect(badSchema?.message.contains("plain identifier") == true)
    }

    @Test func aMissingServerIsUnreachable() async throws {
        let error = await connectError("postgres://app@/db?host=/tmp/onceledger-no-server-here")
        #expect(error?.code == .databaseUnreachable)
        #expect(error?.message.contains("/tmp/onceledger-no-server-here/.s.PGSQL.5432") == true, "\(error?.message ?? "")")
    }

    @Test func anUnknownUserAndAMissingDatabaseSaySo() async throws {
        let server = try PostgresTestServer.shared()
        let socket = try PostgresURL(server.url).socketDirectory ?? ""
        guard !socket.isEmpty else { return }   // a server named by URL: its users are unknown here
        let user = await connectError("postgres://nobody_here@/postgres?host=\(socket)")
        #expect(user?.code == .databaseAuthentication)
        #expect(user?.message.contains("nobody_here") == true)
        let database = await connectError("postgres://\(PostgresTestServer.username)@/no_such_db?host=\(socket)")
        #expect(database?.code == .invalidArgument)
        #expect(database?.message.contains("no_such_db") == true)
    }

    @Test func aUserWithoutTheRightToCreateTheSchemaGetsAPermissionError() async throws {
        let harness = try PostgresHarness()
        let socket = try PostgresURL(harness.server.url).socketDirectory ?? ""
        guard !socket.isEmpty else { return }
        let role = "reader_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await harness.open()
        defer { try? admin.close() }
        _ = try await admin.pool.withConnection(.writing("test")) { connection in
            try await connection.query("CREATE ROLE \(unescaped: role) LOGIN", logger: admin.logger)
            return 0
        }
        let error = await connectError("postgres://\(role)@/postgres?host=\(socket)", schema: "t_\(role)")
        #expect(error?.code == .databasePermission)
        #expect(error?.message.contains(role) == true, "\(error?.message ?? "")")
    }

    @Test func aSchemaWrittenByANewerVersionIsRefused() async throws {
        let harness = try PostgresHarness()
        let store = try await harness.open()
        let newer = Int32(PostgresSchema.version + 1)
        _ = try await store.pool.withConnection(.writing("test")) { connection in
            try await connection.query("UPDATE \(unescaped: store.quotedSchema).meta SET schema_version = \(newer)",
                                       logger: store.logger)
            return 0
        }
        try store.close()
        let refused = await ledgerError { try await harness.open() }
        #expect(refused?.code == .unsupportedVersion)
        #expect(refused?.message.contains("newer") == true && refused?.message.contains("\(newer)") == true)
    }

    @Test func aClosedStoreRefusesWork() async throws {
        let store = try await PostgresHarness().open()
        try store.close()
        #expect(await ledgerError { try await store.claim(claimRequest("k")) }?.code == .closed)
        #expect(await ledgerError { try await store.entry("k") }?.code == .closed)
    }
}

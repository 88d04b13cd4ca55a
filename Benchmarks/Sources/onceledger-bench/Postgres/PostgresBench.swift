import Foundation
import Logging
import OnceLedger
import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import PostgresNIO

/// Targets T19–T20 (`Benchmarks/README.md`): `Ledger.once` on `PostgresStore` against the
/// pattern users write by hand (`HandWrittenIdempotency`), on the same server in the same run:
///
/// - T19: 1 caller; the hand-written pattern on 1 connection.
/// - T20: `callers` callers over `connections` connections, both sides: the hand-written
///   pattern holds one pooled connection per call, the store gets a pool of the same size.
///
/// The four rows run interleaved in rounds (the order rotates per round); a ratio is the
/// median over the rounds of (store rate ÷ hand-written rate in the same round). Every call
/// uses a fresh key and a no-op effect, as the file store's `once` rows do. The server is the
/// one `--postgres-url` names, or else a throw-away cluster (`PostgresTestServer`) that the run
/// starts and removes.
enum PostgresBench {
    struct Settings: Sendable {
        var version = ""
        var fsync = ""
        var synchronousCommit = ""
        var walSyncMethod = ""
        var sharedBuffers = ""
        var commitDelay = ""
        var dataDirectory: String?

        var summary: String {
            "fsync=\(fsync), synchronous_commit=\(synchronousCommit), wal_sync_method=\(walSyncMethod), shared_buffers=\(sharedBuffers), commit_delay=\(commitDelay)"
        }
    }

    struct Result: Sendable {
        var settings = Settings()
        var server = ""
        var rounds = 0
        var callers = 0
        var connections = 0
        var hand1: [Double] = []
        var once1: [Double] = []
        var handMany: [Double] = []
        var onceMany: [Double] = []
    }

    enum Row: CaseIterable { case hand1, once1, handMany, onceMany }

    static func median(_ values: [Double]) -> Double { MemoBench.median(values) }

    static func run(url: String?, rounds: Int, seconds: Double, callers: Int, connections: Int,
                    progress: Progress) async throws -> Result
    {
        var result = Result()
        result.rounds = rounds
        result.callers = callers
        result.connections = connections
        let (server, serverURL, description) = try await Self.server(url: url, progress: progress)
        result.server = description
        defer { server?.stop() }
        let parsed = try PostgresURL(serverURL)
        let clientConfiguration = Self.clientConfiguration(parsed)
        result.settings = try await Self.settings(parsed)

        // Tables and schemas of this run only (dropped at the end), so a URL's server is left as it was.
        let tag = "bench_\(getpid())"
        let hand1 = try await HandWrittenIdempotency.prepare(
            configuration: clientConfiguration, connections: 1, table: "\(tag)_hand_1", receipt: BenchCommand.receipt)
        let handMany = try await HandWrittenIdempotency.prepare(
            configuration: clientConfiguration, connections: connections, table: "\(tag)_hand_\(callers)",
            receipt: BenchCommand.receipt)
        let store1 = try await PostgresOnce.open(url: serverURL, schema: "\(tag)_once_1", connections: connections,
                                                 receipt: BenchCommand.receipt)
        let storeMany = try await PostgresOnce.open(url: serverURL, schema: "\(tag)_once_\(callers)",
                                                    connections: connections, receipt: BenchCommand.receipt)
        let slot = seconds / Double(rounds)
        var failure: (any Error)?
        do {
            for round in 1...rounds {
                let order = BenchCommand.roundOrder(round: round, count: Row.allCases.count).map { Row.allCases[$0] }
                let keyPrefix = "r\(round)"
                for row in order {
                    let prefix = "postgres round \(round)/\(rounds):"
                    switch row {
                    case .hand1:
                        progress.say("\(prefix) hand-written idempotency table, 1 caller")
                        result.hand1.append(try await CallRate.measure(callers: 1, seconds: slot) { caller, serial in
                            try await hand1.once(Self.key(keyPrefix, caller, serial))
                        }.perSecond)
                    case .once1:
                        progress.say("\(prefix) Ledger.once on PostgresStore, 1 caller")
                        result.once1.append(try await store1.run(callers: 1, seconds: slot, keyPrefix: keyPrefix).perSecond)
                    case .handMany:
                        progress.say("\(prefix) hand-written idempotency table, \(callers) callers over \(connections) connections")
                        result.handMany.append(try await CallRate.measure(callers: callers, seconds: slot) { caller, serial in
                            try await handMany.once(Self.key(keyPrefix, caller, serial))
                        }.perSecond)
                    case .onceMany:
                        progress.say("\(prefix) Ledger.once on PostgresStore, \(callers) callers over \(connections) connections")
                        result.onceMany.append(try await storeMany.run(callers: callers, seconds: slot, keyPrefix: keyPrefix).perSecond)
                    }
                }
            }
        } catch {
            failure = error
        }
        for bench in [hand1, handMany] {
            try? await bench.drop()
            bench.shutdown()
        }
        for store in [store1, storeMany] { try? await store.closeAndDrop() }
        if let failure { throw failure }
        return result
    }

    /// The server a run measures: the one `url` names, or else a throw-away cluster started
    /// for it (the caller stops it); with a description for the report.
    static func server(url: String?, progress: Progress) async throws
        -> (server: PostgresTestServer?, url: String, description: String) {
        if let url { return (nil, url, "the server at \(try PostgresURL(url).redacted)") }
        progress.say("postgres: starting a throw-away cluster (initdb)")
        let started = try await BlockingThread.run { try PostgresTestServer.start() }
        return (started, started.url,
                "a throw-away cluster in \(started.directory ?? "?") (\(DiskDescription.of(started.directory ?? "/tmp").summary))")
    }

    static func key(_ prefix: String, _ caller: Int, _ serial: Int?) -> String {
        serial.map { "\(prefix)c\(caller)-\($0)" } ?? "\(prefix)c\(caller)w"
    }

    /// postgres-nio's pool configuration for `url` (the hand-written side; the store makes its own).
    static func clientConfiguration(_ url: PostgresURL) -> PostgresClient.Configuration {
        if let socketDirectory = url.socketDirectory {
            return PostgresClient.Configuration(unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(url.port)",
                                                username: url.username, password: url.password, database: url.database)
        }
        let tls: PostgresClient.Configuration.TLS = switch url.tls {
        case .disable: .disable
        case .prefer: .prefer(.makeClientConfiguration())
        case .require: .require(.makeClientConfiguration())
        }
        return PostgresClient.Configuration(host: url.host ?? "localhost", port: url.port, username: url.username,
                                            password: url.password, database: url.database, tls: tls)
    }

    /// Runs `body` with a client of one connection to `url`'s server.
    static func withClient<Value: Sendable>(_ url: PostgresURL,
                                            _ body: (PostgresClient) async throws -> Value) async throws -> Value {
        var configuration = clientConfiguration(url)
        configuration.options.maximumConnections = 1
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        let running = Task { await client.run() }
        defer { running.cancel() }
        return try await body(client)
    }

    /// Quiet: the bench reports errors itself.
    static let logger: Logger = {
        var logger = Logger(label: "onceledger-bench-postgres")
        logger.logLevel = .critical
        return logger
    }()

    /// Drops `schema` and everything in it, if it exists.
    static func dropSchema(url: String, schema: String) async throws {
        try await dropSchema(url: try PostgresURL(url), schema: schema)
    }

    static func dropSchema(url: PostgresURL, schema: String) async throws {
        try await withClient(url) { client in
            _ = try await client.query(PostgresQuery(unsafeSQL: "DROP SCHEMA IF EXISTS \"\(schema)\" CASCADE"), logger: logger)
        }
    }

    /// The server's version and the settings that decide what a commit costs.
    static func settings(_ url: PostgresURL) async throws -> Settings {
        try await withClient(url) { client in
            func show(_ name: String) async throws -> String {
                let rows = try await client.query(PostgresQuery(unsafeSQL: "SELECT current_setting('\(name)')"), logger: logger)
                for try await value in rows.decode(String.self) { return value }
                return "?"
            }
            var settings = Settings()
            settings.version = try await show("server_version")
            settings.fsync = try await show("fsync")
            settings.synchronousCommit = try await show("synchronous_commit")
            settings.walSyncMethod = try await show("wal_sync_method")
            settings.sharedBuffers = try await show("shared_buffers")
            settings.commitDelay = try await show("commit_delay")
            return settings
        }
    }

    static func render(_ result: Result) -> String {
        let ratio1 = median(zip(result.once1, result.hand1).map { $0 / $1 })
        let ratioMany = median(zip(result.onceMany, result.handMany).map { $0 / $1 })
        let many = "\(result.callers) callers over \(result.connections) connections"
        var table = TextTable(["PostgreSQL (T19–T20)", "median calls/s", "median ratio", "target", "met"])
        table.add(["hand-written idempotency table, 1 caller", Format.rate(median(result.hand1)), "1.00", "", ""])
        table.add(["T19 Ledger.once on PostgresStore, 1 caller", Format.rate(median(result.once1)),
                   Format.fixed(ratio1, 2), "≥ 1.0 × hand-written", ratio1 >= 1.0 ? "yes" : "NO"])
        table.add(["hand-written idempotency table, \(many)", Format.rate(median(result.handMany)), "1.00", "", ""])
        table.add(["T20 Ledger.once on PostgresStore, \(many)", Format.rate(median(result.onceMany)),
                   Format.fixed(ratioMany, 2), "≥ 3 × hand-written", ratioMany >= 3 ? "yes" : "NO"])
        var perRound = TextTable(["round", "hand 1/s", "once 1/s", "hand \(result.callers)/s", "once \(result.callers)/s"])
        for index in result.hand1.indices {
            perRound.add(["\(index + 1)", Format.rate(result.hand1[index]), Format.rate(result.once1[index]),
                          Format.rate(result.handMany[index]), Format.rate(result.onceMany[index])])
        }
        return """
            PostgreSQL (T19–T20): Ledger.once on PostgresStore against the hand-written idempotency table
            server: PostgreSQL \(result.settings.version), \(result.server)
            settings: \(result.settings.summary)
            \(table.render())
            \(perRound.render())
            (a call: the hand-written pattern's INSERT … ON CONFLICT DO NOTHING RETURNING and UPDATE, each its own \
            transaction; Ledger.once's claim and completion; a no-op effect and a fresh key per call)
            """
    }
}

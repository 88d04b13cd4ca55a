// Proves that the operator commands `pending`, `entries`, `resolve`, `forget`, `runs` and
// `sweep` work on a PostgreSQL ledger given by URL (postgres:// and postgresql://, the
// socket as ?host=DIR) through the real `onceledger` executable: a ledger is filled
// in-process through `Ledger` on a `PostgresStore` (done, pending-unknown and absent keys,
// memo runs), each command is run against its URL, and its output and the store's state
// afterwards are checked. Also: a URL naming a database without the ledger's schema is
// refused (nothing created), a malformed URL is a usage error, and an unreachable server
// gets the store's typed error.
import Foundation
import OnceLedger
import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import OnceLedgerTestProcess
import Testing

enum CLI {
    /// `.build/<config>/onceledger`, next to the test bundle.
    static var executableURL: URL {
        var directory = Bundle.main.bundleURL
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("onceledger")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("onceledger")
    }

    struct Result {
        var exitCode: Int32
        var stdout: String
        var stderr: String
        var lines: [String] { stdout.split(separator: "\n").map(String.init) }
    }

    /// Runs `onceledger arguments…` to completion (both outputs read at once), through
    /// `ChildProcess` (no descriptor but 0–2 inherited; killed past its bound).
    static func run(_ arguments: [String]) throws -> Result {
        let result = try ChildProcess.run(executableURL.path, arguments)
        return Result(exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr)
    }

    /// The objects of `--json` output, one per line.
    static func objects(_ text: String) throws -> [[String: Any]] {
        try text.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        }
    }
}

struct EffectFailure: Error {}

@Suite(.serialized, .enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct DatabaseCLITests {
    /// A ledger on a schema of its own with: "paid" done (receipt "r-paid"), "charge"
    /// pending-unknown (its effect threw), "mail" done, and a memo run "nightly" that
    /// succeeded (2 values) and one "open" still running.
    static func filledLedger(_ url: String, schema: String) async throws {
        let store = try await PostgresStore.connect(url: url, schema: schema)
        let ledger = Ledger(store: store)
        try await ledger.once("paid") { _ in "r-paid" }
        try await ledger.once("mail") { _ in "r-mail" }
        await #expect(throws: LedgerError.self) {
            try await ledger.once("charge") { _ -> String in throw EffectFailure() }
        }
        let nightly = try await ledger.memo(run: "nightly", step: "fetch")
        try await nightly.put("a", bytes: [1, 2, 3])
        try await nightly.put("b", bytes: [4, 5])
        _ = try await ledger.finishRun("nightly", status: .succeeded)
        let open = try await ledger.memo(run: "open", step: "s")
        try await open.put("x", bytes: [9])
        try ledger.close()
    }

    @Test func everyCommandWorksOnAPostgresURL() async throws {
        let server = try ProcessTestSupport.server()
        let schema = ProcessTestSupport.schema("cli")
        try await Self.filledLedger(server.url, schema: schema)
        let url = server.url
        let at = ["--schema", schema]

        // pending: the one pending-unknown key, with the hint naming the URL.
        let pending = try CLI.run(["pending", url] + at)
        #expect(pending.exitCode == 0, "\(pending.stderr)")
        #expect(pending.stdout.contains("charge") && !pending.stdout.contains("paid"), "\(pending.stdout)")
        #expect(pending.stdout.contains("onceledger resolve \(url) --schema \(schema) KEY --done"), "\(pending.stdout)")
        let pendingJSON = try CLI.objects(try CLI.run(["pending", url, "--json"] + at).stdout)
        #expect(pendingJSON.map { $0["key"] as? String } == ["charge"])
        #expect(pendingJSON.first?["state"] as? String == "pending-unknown")

        // entries: every key, in key order, with receipts; --state filters.
        let entries = try CLI.objects(try CLI.run(["entries", url, "--json"] + at).stdout)
        #expect(entries.map { $0["key"] as? String } == ["charge", "mail", "paid"])
        #expect(entries.map { $0["state"] as? String } == ["pending-unknown", "done", "done"])
        #expect(entries.last?["receipt"] as? String == "\"r-paid\"")
        let done = try CLI.run(["entries", url, "--state", "done"] + at)
        #expect(done.exitCode == 0 && done.stdout.contains("mail") && !done.stdout.contains("charge"), "\(done.stdout)")

        // resolve: pending-unknown → done, recorded in the database.
        let resolve = try CLI.run(["resolve", url, "charge", "--done", "--receipt", "\"r-charge\"",
                                   "--reason", "seen in the processor", "--actor", "alice"] + at)
        #expect(resolve.exitCode == 0, "\(resolve.stderr)")
        #expect(resolve.stdout.contains("pending-unknown → done") && resolve.stdout.contains("recorded in the database by \"alice\""),
                "\(resolve.stdout)")
        // resolve of a key in the wrong state writes nothing, exit 8.
        let again = try CLI.run(["resolve", url, "charge", "--absent", "--reason", "x"] + at)
        #expect(again.exitCode == 8 && again.stderr.contains("it is done"), "\(again.stderr)")

        // forget: done → absent, with the confirmation flag.
        let forget = try CLI.run(["forget", url, "mail", "--reason", "resend", "--i-understand-this-allows-a-rerun"] + at)
        #expect(forget.exitCode == 0 && forget.stdout.contains("forgot mail: done → absent"), "\(forget.stdout)\(forget.stderr)")

        let check = try await PostgresStore.connect(url: url, schema: schema)
        #expect(try await check.entry("charge")?.status == .done)
        #expect(try await check.entry("charge")?.receipt == Array("\"r-charge\"".utf8))
        #expect(try await check.entry("mail")?.status == .absent)
        try check.close()

        // runs: both generations; the ended one with its values.
        let runs = try CLI.objects(try CLI.run(["runs", url, "--json"] + at).stdout)
        #expect(runs.map { $0["run"] as? String } == ["nightly", "open"])
        #expect(runs.first?["status"] as? String == "succeeded" && runs.first?["entries"] as? Int == 2, "\(runs)")
        #expect(runs.last?["status"] as? String == "running", "\(runs)")

        // sweep: the dry run writes nothing; the sweep removes the ended run's memo only.
        let dry = try CLI.run(["sweep", url, "--retention", "0s", "--dry-run"] + at)
        #expect(dry.exitCode == 0 && dry.stdout.contains("would sweep run \"nightly\"") && dry.stdout.contains("nothing was written"),
                "\(dry.stdout)\(dry.stderr)")
        #expect(try CLI.objects(try CLI.run(["runs", url, "--json"] + at).stdout).count == 2)
        let sweep = try CLI.run(["sweep", url, "--retention", "0s"] + at)
        #expect(sweep.exitCode == 0 && sweep.stdout.contains("swept 1 run generation (2 memo entries)"), "\(sweep.stdout)\(sweep.stderr)")
        let after = try CLI.objects(try CLI.run(["runs", url, "--json"] + at).stdout)
        #expect(after.map { $0["run"] as? String } == ["open"], "\(after)")
        await ProcessTestSupport.dropSchema(server.url, schema: schema)
    }

    /// postgresql:// is the same as postgres://, and the socket directory may be given as
    /// the URL's host part percent-encoded.
    @Test func postgresqlSchemeAndEncodedSocketHostWork() async throws {
        let server = try ProcessTestSupport.server()
        guard let socketDirectory = server.socketDirectory else { return }  // a server by URL: no socket to spell
        let schema = ProcessTestSupport.schema("cliurl")
        try await Self.filledLedger(server.url, schema: schema)
        let encoded = socketDirectory.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? socketDirectory
        for url in ["postgresql://\(PostgresTestServer.username)@/\(PostgresTestServer.database)?host=\(socketDirectory)",
                    "postgres://\(PostgresTestServer.username)@\(encoded)/\(PostgresTestServer.database)"] {
            let entries = try CLI.run(["entries", url, "--schema", schema, "--json"])
            #expect(entries.exitCode == 0, "\(url): \(entries.stderr)")
            #expect(try CLI.objects(entries.stdout).count == 3, "\(url): \(entries.stdout)")
        }
        await ProcessTestSupport.dropSchema(server.url, schema: schema)
    }

    @Test func aDatabaseWithoutTheLedgerIsRefusedAndNothingIsCreated() async throws {
        let server = try ProcessTestSupport.server()
        let schema = ProcessTestSupport.schema("absent")
        for arguments in [["entries", server.url], ["pending", server.url], ["runs", server.url],
                          ["sweep", server.url, "--retention", "1d"],
                          ["resolve", server.url, "k", "--absent", "--reason", "r"],
                          ["forget", server.url, "k", "--reason", "r", "--i-understand-this-allows-a-rerun"]] {
            let result = try CLI.run(arguments + ["--schema", schema])
            #expect(result.exitCode == 8, "\(arguments[0]): \(result.exitCode) \(result.stderr)")
            #expect(result.stderr.contains("has no OnceLedger ledger in schema \"\(schema)\""), "\(arguments[0]): \(result.stderr)")
        }
        // Still no such schema: a store opened on it now is a new, empty ledger.
        let store = try await PostgresStore.connect(url: server.url, schema: schema)
        #expect(try await store.entryCount() == 0)
        try store.close()
        await ProcessTestSupport.dropSchema(server.url, schema: schema)
    }

    @Test func aBadURLIsAUsageErrorAndAnUnreachableServerATypedOne() throws {
        let malformed = try CLI.run(["entries", "postgres://@/db?host=/tmp"])
        #expect(malformed.exitCode == 16, "\(malformed.stderr)")
        #expect(malformed.stderr.contains("names no user"), "\(malformed.stderr)")
        let missing = "/tmp/onceledger-no-server-\(UUID().uuidString.prefix(8))"
        let unreachable = try CLI.run(["pending", "postgres://app@/db?host=\(missing)", "--json"])
        #expect(unreachable.exitCode == 8, "\(unreachable.stderr)")
        #expect(unreachable.stderr.contains("[\(LedgerError.Code.databaseUnreachable.rawValue)]"), "\(unreachable.stderr)")
        let object = try CLI.objects(unreachable.stdout).first
        #expect(object?["code"] as? String == LedgerError.Code.databaseUnreachable.rawValue, "\(unreachable.stdout)")
    }
}

// Proves the throw-away server the PostgreSQL tests run against works: `PostgresTestServer`
// starts a cluster (initdb into a temporary directory, Unix socket only; through runuser
// when root), and a client connects to it by the URL the helper gives and runs a query; and the
// programs it starts (initdb, pg_ctl, and through it the server) inherit none of this process's
// descriptors but their standard ones: a pipe another test reads to its end is not held open
// by a server that outlives it (a whole test run hung on that).
import Foundation
import Logging
import OnceLedgerPostgres
@testable import OnceLedgerPostgresTestSupport
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

    @Test func theProgramsItStartsInheritOnlyTheirStandardDescriptors() throws {
        let pipe = Pipe()  // Foundation's pipes are not close-on-exec
        let inheritable = pipe.fileHandleForWriting.fileDescriptor
        let output = NSTemporaryDirectory() + "onceledger-fd-test-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: output) }
        // The shell lists its own descriptors (no program of its own opens one).
        let status = try PostgresTestServer.spawnAndWait(
            ["/bin/sh", "-c", "for fd in /proc/$$/fd/*; do echo \"${fd##*/}\"; done"], output: output)
        #expect(status == 0)
        let listed = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n").compactMap { Int32($0) }
        #expect(listed.contains(1), "the listing itself is on descriptor 1")
        #expect(!listed.contains(inheritable), "descriptor \(inheritable) (a pipe's write end) was inherited: \(listed)")
        // 0-2, and the shell's own: the directory its glob reads (3), and 10 and up.
        #expect(listed.allSatisfy { $0 <= 3 || $0 >= 10 }, "only 0-3 and 10 and up: \(listed)")
        try pipe.fileHandleForWriting.close()
    }
}

// Proves what a crashed or paused process leaves on a PostgreSQL ledger, with real processes
// and signals:
// - SIGKILL inside an effect: the key stays claimed by the dead worker until its lease
//   expires, then is pending-unknown to everyone: a fail-closed worker gets a
//   `pending-unknown` error and never runs the effect again; a worker with the retry policy
//   runs it again with the same token.
// - SIGSTOP inside an effect, past the lease: another worker (retry policy) takes the key
//   over and completes it; after SIGCONT the paused worker's completion is fenced (a typed
//   error, never "performed"), and the successor's receipt stands.
// Leases are short (ONCELEDGER_MP_LEASE_MS, default 3000 ms: expiry comes soon, yet a live
// worker on a loaded machine still renews in time); the tests wait on the workers' output
// lines, never on time.
import Foundation
import OnceLedger
import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import Testing

@Suite(.serialized, .enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct MultiProcessCrashTests {
    static let leaseMilliseconds = max(100, Int(ProcessInfo.processInfo.environment["ONCELEDGER_MP_LEASE_MS"] ?? "") ?? 3000)

    @Test func sigkillInsideAnEffectLeavesTheKeyPendingUnknownNeverRerunUnderFailClosed() async throws {
        let server = try ProcessTestSupport.server()
        let schema = ProcessTestSupport.schema("kill")
        let scratch = try ScratchDirectory("kill")
        defer { scratch.remove() }
        try await ProcessTestSupport.store(server.url, schema: schema).close()
        let lease = ["--lease-ms", "\(Self.leaseMilliseconds)"]
        func arguments(_ keys: [String]) -> [String] {
            ProcessTestSupport.workerArguments(url: server.url, schema: schema, effects: scratch.effects, keys: keys) + lease
        }

        // A runs "charge" and is killed inside its effect (after the execution is on record).
        let victim = try WorkerProcess(name: "A", arguments(["before", "charge"]) + ["--hold", "charge"])
        defer { victim.terminate() }
        #expect(victim.wait(forLine: "hold charge"), "\(victim.transcript)")
        victim.send(SIGKILL)
        let killed = victim.waitForExit()
        #expect(killed.signal == SIGKILL, "\(victim.transcript)")

        // B, fail-closed: waits while A's lease may still be live, then finds the key
        // pending-unknown and refuses to run it; "before" (done by A) is already done.
        let failClosed = try WorkerProcess(name: "B", arguments(["before", "charge"]) + ["--policy", "fail-closed"])
        defer { failClosed.terminate() }
        let closedRun = failClosed.waitForExit()
        #expect(closedRun.status == 0, "\(failClosed.transcript)")
        #expect(failClosed.errors["charge"] == LedgerError.Code.pendingUnknown.rawValue, "\(failClosed.transcript)")
        #expect(failClosed.outcomes["before"]?.performed == false && failClosed.outcomes["before"]?.receipt == "A",
                "\(failClosed.transcript)")
        var executions = EffectExecution.read(scratch.effects).filter { $0.key == "charge" }
        #expect(executions.map(\.worker) == ["A"], "the effect ran again under fail-closed: \(executions)")

        // Every reader sees it pending-unknown.
        let store = try await ProcessTestSupport.store(server.url, schema: schema)
        let entry = try await store.entry("charge")
        #expect(entry?.status == .pendingUnknown, "\(String(describing: entry))")

        // C, retry: runs it again, with the same token (the downstream system deduplicates).
        let retry = try WorkerProcess(name: "C", arguments(["charge"]) + ["--policy", "retry"])
        defer { retry.terminate() }
        #expect(retry.waitForExit().status == 0, "\(retry.transcript)")
        #expect(retry.outcomes["charge"]?.performed == true, "\(retry.transcript)")
        executions = EffectExecution.read(scratch.effects).filter { $0.key == "charge" }
        #expect(executions.map(\.worker) == ["A", "C"])
        #expect(Set(executions.map(\.token)).count == 1, "a retry keeps the token: \(executions)")
        let after = try await store.entry("charge")
        #expect(after?.status == .done && after?.receipt == ProcessTestSupport.receipt("C"))
        try store.close()
        await ProcessTestSupport.dropSchema(server.url, schema: schema)
    }

    @Test func sigstopPastTheLeaseIsFencedAndTheSuccessorsResultStands() async throws {
        let server = try ProcessTestSupport.server()
        let schema = ProcessTestSupport.schema("stop")
        let scratch = try ScratchDirectory("stop")
        defer { scratch.remove() }
        try await ProcessTestSupport.store(server.url, schema: schema).close()
        let lease = ["--lease-ms", "\(Self.leaseMilliseconds)"]
        func arguments(_ keys: [String]) -> [String] {
            ProcessTestSupport.workerArguments(url: server.url, schema: schema, effects: scratch.effects, keys: keys) + lease
        }

        // A holds "ship" inside its effect until the release file exists; it is paused there.
        let paused = try WorkerProcess(name: "A", arguments(["ship"])
            + ["--hold", "ship", "--release-file", scratch.file("release"), "--policy", "retry"])
        defer { paused.terminate() }
        #expect(paused.wait(forLine: "hold ship"), "\(paused.transcript)")
        paused.send(SIGSTOP)

        // B (retry) waits while A's lease is live; A cannot renew it while stopped, so it
        // expires and B takes the key over (attempt 2, same token) and completes it.
        let successor = try WorkerProcess(name: "B", arguments(["ship"]) + ["--policy", "retry"])
        defer { successor.terminate() }
        let successorRun = successor.waitForExit()
        #expect(successorRun.status == 0 && successor.outcomes["ship"]?.performed == true && successor.outcomes["ship"]?.receipt == "B",
                "\(successor.transcript)")

        // A wakes, its effect returns, and its completion is refused: a typed error, and
        // nothing it could overwrite.
        scratch.touch("release")
        paused.send(SIGCONT)
        let pausedRun = paused.waitForExit()
        #expect(pausedRun.status == 0, "\(paused.transcript)")
        #expect(paused.outcomes["ship"] == nil, "the fenced worker reported an outcome: \(paused.transcript)")
        let code = paused.errors["ship"]
        #expect(code != nil && code != "other", "the fenced completion did not fail with a typed error: \(paused.transcript)")

        let store = try await ProcessTestSupport.store(server.url, schema: schema)
        let entry = try await store.entry("ship")
        #expect(entry?.status == .done && entry?.receipt == ProcessTestSupport.receipt("B"), "\(String(describing: entry))")
        let executions = EffectExecution.read(scratch.effects).filter { $0.key == "ship" }
        #expect(executions.map(\.worker) == ["A", "B"], "\(executions)")
        #expect(Set(executions.map(\.token)).count == 1, "the successor kept the token: \(executions)")
        try store.close()
        await ProcessTestSupport.dropSchema(server.url, schema: schema)
    }
}

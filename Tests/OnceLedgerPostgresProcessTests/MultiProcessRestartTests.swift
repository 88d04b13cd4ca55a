// Proves that restarting the PostgreSQL server under a running worker loses nothing that was
// acknowledged and fails only with typed errors: a worker process calls `once` on many keys
// (8 tasks, each effect taking a little time so the run is long), the server of a cluster of
// the test's own is restarted (`pg_ctl restart -m fast`: connections dropped) once the first
// outcomes are in. Every call that returned (performed or already done) is done in the store
// after the restart; every call that failed failed with a `LedgerError` code (connection
// lost, database unreachable, …), never an untyped error and never reported as done; no
// effect ran twice; no call hangs (a batch the server never answers fails after the store's
// answer deadline as connection-lost, outcome unknown). Then a worker with the retry policy finishes every key, and each key's
// executions share one token. Keys: ONCELEDGER_MP_RESTART_KEYS (default 1200).
import Foundation
import OnceLedger
import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import Testing

@Suite(.serialized, .enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct MultiProcessRestartTests {
    static let keyCount = max(100, Int(ProcessInfo.processInfo.environment["ONCELEDGER_MP_RESTART_KEYS"] ?? "") ?? 1200)

    @Test func serverRestartMidRunGivesTypedErrorsAndLosesNothingAcknowledged() async throws {
        // A cluster of this test's own: restarting the shared one would cut other tests off.
        let server: PostgresTestServer
        do {
            server = try PostgresTestServer.start()
        } catch {
            Issue.record("cannot start a PostgreSQL cluster to restart: \(error)")
            return
        }
        defer { server.stop() }
        let schema = ProcessTestSupport.schema("restart")
        let scratch = try ScratchDirectory("restart")
        defer { scratch.remove() }
        try await ProcessTestSupport.store(server.url, schema: schema).close()
        let keys = (0..<Self.keyCount).map { "k\($0)" }
        func arguments(_ extra: [String]) -> [String] {
            ProcessTestSupport.workerArguments(url: server.url, schema: schema, effects: scratch.effects, keys: keys)
                + ["--lease-ms", "3000", "--concurrency", "8", "--answer-deadline-ms", "15000"] + extra
        }

        let worker = try WorkerProcess(name: "W", arguments(["--effect-delay-ms", "20"]))
        defer { worker.terminate() }
        #expect(worker.wait { $0.lines.filter { $0.hasPrefix("performed ") }.count >= 40 }, "\(worker.transcript)")
        let callsBeforeRestart = worker.outcomes.count + worker.errors.count
        #expect(callsBeforeRestart < keys.count, "the run ended before the restart: raise ONCELEDGER_MP_RESTART_KEYS")
        try server.restart()
        let run = worker.waitForExit()
        #expect(run.status == 0 && run.lines.last == "finished", "\(worker.transcript.suffix(3000))")

        // Errors are typed, and a failed call was never reported done.
        let errors = worker.errors
        let outcomes = worker.outcomes
        for (key, code) in errors {
            #expect(code != "other", "\(key) failed with an untyped error: \(worker.lines.filter { $0.hasPrefix("error \(key) ") })")
            #expect(outcomes[key] == nil)
        }
        // Nothing acknowledged is lost.
        let store = try await ProcessTestSupport.store(server.url, schema: schema)
        var lost: [String] = []
        for (key, outcome) in outcomes {
            let entry = try await store.entry(key)
            if entry?.status != .done || entry?.receipt != ProcessTestSupport.receipt(outcome.receipt) {
                lost.append("\(key): \(entry.map { "\($0.status.rawValue)" } ?? "no entry")")
            }
        }
        #expect(lost.isEmpty, "acknowledged keys not done after the restart: \(lost.prefix(10))")
        let unanswered = keys.filter { outcomes[$0] == nil && errors[$0] == nil }
        #expect(unanswered.isEmpty, "calls that neither returned nor failed: \(unanswered.prefix(10)); their lines: \(worker.lines.filter { line in unanswered.prefix(10).contains { line.contains(" \($0) ") || line.hasSuffix(" \($0)") } })")
        var executions = Dictionary(grouping: EffectExecution.read(scratch.effects), by: \.key)
        #expect(executions.values.allSatisfy { $0.count == 1 }, "an effect ran twice in one fail-closed run")

        // After the restart, the retry policy finishes every key; a key runs again only if
        // its call failed, and then with the same token.
        let finisher = try WorkerProcess(name: "F", arguments(["--policy", "retry"]))
        defer { finisher.terminate() }
        #expect(finisher.waitForExit().status == 0, "\(finisher.transcript)")
        #expect(finisher.errors.isEmpty, "\(finisher.transcript.suffix(2000))")
        executions = Dictionary(grouping: EffectExecution.read(scratch.effects), by: \.key)
        for key in keys {
            let ran = executions[key] ?? []
            #expect(!ran.isEmpty && Set(ran.map(\.token)).count == 1, "\(key): \(ran)")
            if outcomes[key] != nil { #expect(ran.count == 1, "acknowledged \(key) ran again: \(ran)") }
            let entry = try await store.entry(key)
            #expect(entry?.status == .done, "\(key): \(String(describing: entry))")
        }
        try store.close()
    }
}

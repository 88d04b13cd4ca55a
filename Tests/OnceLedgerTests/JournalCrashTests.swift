// Proves the replay journal keeps its promises across crashes at every I/O step, with
// `LedgerCrashRunner` (a FileStore on `SimulatedStorage`, crashed at every mutating operation of
// the workload, power loss or process kill, reopen, rerun): a workflow of an LLM step, the clock,
// a UUID, a compaction, an external effect and a last step, then `finish`. Checked after every
// reopen and at the end: every output a step returned to the workflow is in the journal with the
// bytes returned (durable before it was seen); a step that returned never runs its body again and
// always returns the same output (the recovered run produces the same result); the effect's body
// runs exactly once over all attempts — a crash inside it surfaces as pending-unknown (counted
// over all crash points, and it must happen) and is reconciled against the downstream's record,
// never re-run blindly. Seeds are fixed (`ONCELEDGER_CRASH_ITERATIONS`, `ONCELEDGER_SEED`).
import Foundation
import OnceLedger
import OnceLedgerFormat
import OnceLedgerTestSupport
import Synchronization
import Testing

/// What the workflow saw, kept across the simulated crashes (the world outside the process).
private final class JournalWorld: Sendable {
    struct State {
        /// Per position: the output bytes (JSON) a step returned to the workflow.
        var returned: [UInt64: [UInt8]] = [:]
        var generation: UInt64?
        /// Bodies that ran, per step name.
        var bodyRuns: [String: Int] = [:]
        /// The downstream of the effect: what it did, by token.
        var charged: [String: String] = [:]
        var result: [String]?
        var problems: [String] = []
    }
    let state = Mutex(State())

    func body(_ name: String, position: UInt64) {
        state.withLock { state in
            state.bodyRuns[name, default: 0] += 1
            if state.returned[position] != nil {
                state.problems.append("the body of \(name) ran again after its step returned at position \(position)")
            }
        }
    }

    func returned(_ position: UInt64, _ value: some Encodable) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let bytes = Array((try? encoder.encode(value)) ?? Data())
        state.withLock { state in
            if let earlier = state.returned[position], earlier != bytes {
                state.problems.append("position \(position) returned \(String(decoding: bytes, as: UTF8.self)), earlier \(String(decoding: earlier, as: UTF8.self))")
            }
            state.returned[position] = bytes
        }
    }
}

/// Pending-unknown effects the workflow saw, over every crash point of the run.
private let surfacedPending = Atomic<Int>(0)

private func workflow(_ ledger: Ledger, _ world: JournalWorld) async throws {
    if try await ledger.runs(run: "agent-1").contains(where: { $0.status != nil }) {
        return  // finished: a run id used again would be a new run
    }
    let journal = try await ledger.journal(run: "agent-1")
    world.state.withLock { $0.generation = journal.generation }
    let summary = try await journal.step("llm.summarize", input: "order 42") {
        world.body("llm.summarize", position: 0)
        return "a summary"
    }
    world.returned(0, summary)
    let at = try await journal.nowMilliseconds()
    world.returned(1, at)
    let id = try await journal.uuid()
    world.returned(2, id.uuidString)
    try await ledger.compact()
    let charge: @Sendable (EffectContext) async throws -> String = { effect in
        world.body("payment.charge", position: 3)
        return world.state.withLock { state in
            if let done = state.charged[effect.token] { return done }  // the downstream de-duplicates
            state.charged[effect.token] = "charge-\(state.charged.count + 1)"
            return state.charged[effect.token]!
        }
    }
    let receipt: String
    do {
        receipt = try await journal.effect("payment.charge", input: summary, charge)
    } catch let error as LedgerError where error.code == .pendingUnknown {
        // A crash inside the effect: ask the downstream what happened.
        surfacedPending.add(1, ordering: .relaxed)
        receipt = try await journal.effect("payment.charge", input: summary, whenPending: .reconcile { entry in
            let token = EffectToken.derive(key: entry.key, generation: entry.generation, scope: ledger.tokenScope)
            if let done = world.state.withLock({ $0.charged[token] }) { return .happened(done) }
            return .didNotHappen
        }, charge)
    }
    world.returned(3, receipt)
    let reply = try await journal.step("llm.reply", input: receipt) {
        world.body("llm.reply", position: 4)
        return "thanks, \(receipt)"
    }
    world.returned(4, reply)
    let result = [summary, String(at), id.uuidString, receipt, reply]
    world.state.withLock { state in
        if let earlier = state.result, earlier != result {
            state.problems.append("the recovered run produced \(result), earlier \(earlier)")
        }
        state.result = result
    }
    try await journal.finish(.succeeded)
}

private func check(_ ledger: Ledger, _ world: JournalWorld, _ epoch: LedgerCrashRunner.Epoch) async throws {
    let state = world.state.withLock { $0 }
    var problems = state.problems
    if let generation = state.generation {
        let records = try await ledger.journalRecords(run: "agent-1", generation: generation)
        for (position, bytes) in state.returned {
            guard position < records.count else {
                problems.append("position \(position) returned to the workflow but is not in the journal")
                continue
            }
            if records[Int(position)].entry.output != bytes {
                problems.append("position \(position) is journaled with other bytes than it returned")
            }
        }
    }
    if state.charged.count > 1 { problems.append("the payment was charged \(state.charged.count) times") }
    if epoch.isEnd {
        if state.result == nil { problems.append("the workflow never finished") }
        for name in ["llm.summarize", "llm.reply"] where (state.bodyRuns[name] ?? 0) < 1 {
            problems.append("\(name) never ran")
        }
        if state.charged.count != 1 { problems.append("the payment was charged \(state.charged.count) times, not once") }
        if try await ledger.runs(run: "agent-1").first?.status != .succeeded {
            problems.append("the run is not finished as succeeded")
        }
    }
    if !problems.isEmpty { throw CrashInvariantViolation(problems: problems) }
}

@Suite struct JournalCrashTests {
    @Test func aWorkflowRecoversToTheSameResultFromACrashAtEveryStep() async {
        let report = await LedgerCrashRunner().run(
            world: { JournalWorld() },
            workload: { ledger, world, _ in try await workflow(ledger, world) },
            check: { ledger, world, epoch in try await check(ledger, world, epoch) })
        #expect(report.passed, "\(report)")
        #expect(report.crashedAtPoint > 0)
        #expect(surfacedPending.load(ordering: .relaxed) > 0, "no crash landed inside the effect")
        print("JournalCrashTests: \(report); pending-unknown surfaced \(surfacedPending.load(ordering: .relaxed)) times")
    }
}

// Proves the memo keeps its promises across crashes at every I/O step, with `LedgerCrashRunner`
// (a FileStore on `SimulatedStorage`, crashed at every mutating operation of the workload, then
// power loss or process kill, reopen, rerun): a workload that remembers values in the steps of a
// run, finishes it, remembers values in a second run it never finishes, sweeps (retention zero)
// and compacts. Checked after every reopen and at the end: a put that returned is readable, with
// its bytes, until its run generation is swept — a value is missing only if a `finishRun` of its
// generation had started (no sweep ever removes a running generation's values); at the end,
// after the last run's sweep, no ended generation is left (a crash mid-sweep left the rest for
// the next one). Seeds are fixed (`ONCELEDGER_CRASH_ITERATIONS`, `ONCELEDGER_SEED`).
import OnceLedger
import OnceLedgerTestSupport
import Synchronization
import Testing

/// What the workload saw return, kept across the simulated crashes (the world outside).
private final class MemoWorld: Sendable {
    struct Put: Hashable, Sendable {
        var run: String
        var generation: UInt64
        var step: String
        var name: String
        var bytes: [UInt8]
    }
    struct Generation: Hashable, Sendable {
        var run: String
        var generation: UInt64
    }
    let puts = Mutex<Set<Put>>([])
    let finishesStarted = Mutex<Set<Generation>>([])
}

private func value(_ run: String, _ step: Int) -> [UInt8] { Array("\(run)-step-\(step)-answer".utf8) }

private func workload(_ ledger: Ledger, _ world: MemoWorld, _ epoch: LedgerCrashRunner.Epoch) async throws {
    // run-A: three steps, then it ends.
    var generationA: UInt64 = 0
    for step in 0..<3 {
        let memo = try await ledger.memo(run: "run-A", step: "step-\(step)")
        generationA = memo.generation
        let result = try await memo.rememberBytes("answer") { value("run-A", step) }
        world.puts.withLock { _ = $0.insert(.init(run: "run-A", generation: memo.generation, step: "step-\(step)",
                                                   name: "answer", bytes: result.value)) }
    }
    world.finishesStarted.withLock { _ = $0.insert(.init(run: "run-A", generation: generationA)) }
    try await ledger.finishRun("run-A", status: .succeeded)
    // run-B: two steps; it never ends, so it is never swept.
    for step in 0..<2 {
        let memo = try await ledger.memo(run: "run-B", step: "step-\(step)")
        let result = try await memo.rememberBytes("answer") { value("run-B", step) }
        world.puts.withLock { _ = $0.insert(.init(run: "run-B", generation: memo.generation, step: "step-\(step)",
                                                   name: "answer", bytes: result.value)) }
    }
    try await ledger.sweepMemo(retention: MemoRetention(.zero))
    try await ledger.compact()
}

private func check(_ ledger: Ledger, _ world: MemoWorld, _ epoch: LedgerCrashRunner.Epoch) async throws {
    let finishes = world.finishesStarted.withLock { $0 }
    for put in world.puts.withLock({ $0 }) {
        let key = MemoKey(run: MemoRun(run: put.run), generation: put.generation, step: put.step, name: put.name)
        if let stored = try await ledger.store.memoGet(key) {
            if stored.bytes != put.bytes {
                throw CrashInvariantViolation("\(key) reads back other bytes than were put")
            }
        } else if !finishes.contains(.init(run: put.run, generation: put.generation)) {
            throw CrashInvariantViolation("\(key) returned from its put and is gone, but its run generation was never finished")
        }
    }
    if epoch.isEnd {
        let ended = try await ledger.runs().filter { $0.status != nil }
        if !ended.isEmpty {
            throw CrashInvariantViolation("after the last sweep, ended generations are left: \(ended)")
        }
        if try await ledger.runs(run: "run-B").isEmpty {
            throw CrashInvariantViolation("run-B never ended, yet it is gone")
        }
    }
}

@Suite struct MemoCrashTests {
    @Test func putsFinishesSweepsAndCompactionsSurviveACrashAtEveryStep() async {
        let report = await LedgerCrashRunner().run(
            world: { MemoWorld() },
            workload: { ledger, world, epoch in try await workload(ledger, world, epoch) },
            check: { ledger, world, epoch in try await check(ledger, world, epoch) })
        #expect(report.passed, "\(report)")
        #expect(report.crashedAtPoint > 0)
        print("MemoCrashTests: \(report)")
    }
}

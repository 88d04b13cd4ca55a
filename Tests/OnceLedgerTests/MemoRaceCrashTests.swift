// Proves the memo's promises across crashes at every I/O step when its acts race each other,
// with `LedgerCrashRunner` (`MemoCrashTests` runs them one after the other): a put racing its
// run's `finishRun` (the two records can share one commit batch, in either order), a sweep racing
// a compaction (the sweep's records committed while the snapshot is taken or written, the
// snapshot covering some of them), and the background snapshot thread crashed mid-write while the
// sweep's and later puts' appends go on. Checked after every reopen and at the end: a put that
// returned reads back its bytes unless a `finishRun` of its generation had started; a generation
// whose `finishRun` returned is still ended (or swept), and the run's next memo gets a newer
// generation, never the ended one again (it would read the old run's cached answers); at the end,
// after the last sweep, no ended generation is left and the never-ended run-C still holds its
// values. Seeds are fixed (`ONCELEDGER_CRASH_ITERATIONS`, `ONCELEDGER_SEED`).
import OnceLedger
import OnceLedgerFormat
import OnceLedgerTestSupport
import Synchronization
import Testing

private final class RaceWorld: Sendable {
    struct Put: Hashable, Sendable {
        var run: String
        var generation: UInt64
        var step: String
        var bytes: [UInt8]
    }
    struct Generation: Hashable, Sendable {
        var run: String
        var generation: UInt64
    }
    let puts = Mutex<Set<Put>>([])
    let finishesStarted = Mutex<Set<Generation>>([])
    let finishesReturned = Mutex<Set<Generation>>([])
}

private func answer(_ run: String, _ generation: UInt64, _ step: String) -> [UInt8] {
    Array("\(run)-\(generation)-\(step)-answer".utf8) + [UInt8](repeating: UInt8(generation & 0xff), count: 200)
}

/// Puts `step`'s answer in `memo`, recording it if the put returned. A put that loses the
/// race to its run's end is refused with `.runEnded` and wrote nothing.
private func put(_ memo: Memo, _ step: String, _ world: RaceWorld) async throws {
    let bytes = answer(memo.run.run, memo.generation, step)
    do {
        try await memo.put("answer", bytes: bytes)
    } catch let error as LedgerError where error.code == .runEnded {
        return
    }
    world.puts.withLock { _ = $0.insert(.init(run: memo.run.run, generation: memo.generation, step: step, bytes: bytes)) }
}

private func finish(_ ledger: Ledger, _ run: String, generation: UInt64, _ world: RaceWorld) async throws {
    world.finishesStarted.withLock { _ = $0.insert(.init(run: run, generation: generation)) }
    let info = try await ledger.finishRun(run, status: .succeeded)
    world.finishesReturned.withLock { _ = $0.insert(.init(run: run, generation: info.generation)) }
}

private func workload(_ ledger: Ledger, _ world: RaceWorld, _ epoch: LedgerCrashRunner.Epoch) async throws {
    // run-A: a step put, then its last step's put racing the run's end.
    let first = try await ledger.memo(run: "run-A", step: "step-0")
    try await put(first, "step-0", world)
    let last = try await ledger.memo(run: "run-A", step: "step-1")
    async let lastPut: Void = put(last, "step-1", world)
    async let ended: Void = finish(ledger, "run-A", generation: last.generation, world)
    _ = try await (lastPut, ended)
    // run-B: one step, ended, so the sweep below has two runs' generations to take.
    let b = try await ledger.memo(run: "run-B", step: "step-0")
    try await put(b, "step-0", world)
    try await finish(ledger, "run-B", generation: b.generation, world)
    // A sweep racing a compaction (whose snapshot is written on its own thread), and a
    // run-C put committed beside both.
    let c = try await ledger.memo(run: "run-C", step: "step-\(epoch.index)")
    async let swept = ledger.sweepMemo(retention: MemoRetention(.zero))
    async let compacted: Void = ledger.compact()
    async let cPut: Void = put(c, "step-\(epoch.index)", world)
    _ = try await (swept, compacted, cPut)
}

private func check(_ ledger: Ledger, _ world: RaceWorld, _ epoch: LedgerCrashRunner.Epoch) async throws {
    let started = world.finishesStarted.withLock { $0 }
    for put in world.puts.withLock({ $0 }) {
        let key = MemoKey(run: MemoRun(run: put.run), generation: put.generation, step: put.step, name: "answer")
        if let stored = try await ledger.store.memoGet(key) {
            if stored.bytes != put.bytes { throw CrashInvariantViolation("\(key) reads back other bytes than were put") }
        } else if !started.contains(.init(run: put.run, generation: put.generation)) {
            throw CrashInvariantViolation("\(key) returned from its put and is gone, but its run generation was never finished")
        }
    }
    for ended in world.finishesReturned.withLock({ $0 }) {
        let infos = try await ledger.runs(run: ended.run)
        if let info = infos.first(where: { $0.generation == ended.generation }), info.status == nil {
            throw CrashInvariantViolation("\(ended.run) generation \(ended.generation) returned from finishRun and is running again")
        }
        let next = try await ledger.store.memoGeneration(of: MemoRun(run: ended.run))
        if next <= ended.generation {
            throw CrashInvariantViolation("\(ended.run)'s next memo is generation \(next), not newer than its ended generation \(ended.generation)")
        }
    }
    if epoch.isEnd {
        let left = try await ledger.runs().filter { $0.status != nil }
        if !left.isEmpty { throw CrashInvariantViolation("after the last sweep, ended generations are left: \(left)") }
        if try await ledger.runs(run: "run-C").isEmpty { throw CrashInvariantViolation("run-C never ended, yet it is gone") }
    }
}

@Suite struct MemoRaceCrashTests {
    /// Power losses that revert every unsynced directory operation, and ones that keep a
    /// prefix of them (an ordered metadata journal, as on ext4 and XFS).
    @Test(arguments: [false, true])
    func racingPutsFinishesSweepsAndCompactionsSurviveACrashAtEveryStep(directoryOperationsMayPersist: Bool) async {
        var options = SimulatedStorage.Options()
        options.directoryOperationsMayPersist = directoryOperationsMayPersist
        let report = await LedgerCrashRunner(storageOptions: options).run(
            world: { RaceWorld() },
            workload: { ledger, world, epoch in try await workload(ledger, world, epoch) },
            check: { ledger, world, epoch in try await check(ledger, world, epoch) })
        #expect(report.passed, "\(report)")
        #expect(report.crashedAtPoint > 0)
        print("MemoRaceCrashTests: \(report)")
    }
}

// Proves what `Spec/RECOVERY.md` §7 says of an operator's journal truncation across crashes at
// every I/O step, with `LedgerCrashRunner`: the truncation writes one `truncated` entry per
// position, so a crash in the middle leaves a prefix freed, and running it again frees the rest.
// The workload records a run with the old code (steps a, b.old, c.old), truncates from position 1
// (rerun after every crash until it returns, as an operator would), then runs the changed code
// (a, b.new, c.new) and finishes. Checked after every reopen and at the end: once a truncation
// returned, the old steps never come back at the freed positions; every output the changed code
// was handed reads back the same on every later run; at the end the run ended with a, b.new,
// c.new recorded. Seeds are fixed (`ONCELEDGER_CRASH_ITERATIONS`, `ONCELEDGER_SEED`).
import OnceLedger
import OnceLedgerFormat
import OnceLedgerTestSupport
import Synchronization
import Testing

private final class TruncationWorld: Sendable {
    struct State {
        var recorded = false
        var truncated = false
        /// Per position: what a step of the changed code returned.
        var returned: [UInt64: Int] = [:]
        var problems: [String] = []
    }
    let state = Mutex(State())

    func returned(_ position: UInt64, _ value: Int) {
        state.withLock { state in
            if let earlier = state.returned[position], earlier != value {
                state.problems.append("position \(position) returned \(value), earlier \(earlier)")
            }
            state.returned[position] = value
        }
    }
}

private func workload(_ ledger: Ledger, _ world: TruncationWorld, _ epoch: LedgerCrashRunner.Epoch) async throws {
    if try await ledger.runs(run: "r").contains(where: { $0.status != nil }) { return }
    if !world.state.withLock({ $0.recorded }) {
        let old = try await ledger.journal(run: "r")
        _ = try await old.step("a") { 1 }
        _ = try await old.step("b.old") { 2 }
        _ = try await old.step("c.old") { 3 }
        world.state.withLock { $0.recorded = true }
    }
    if !world.state.withLock({ $0.truncated }) {
        let truncation = try await ledger.truncateJournal(run: "r", from: 1, actor: "ops@example", reason: "b and c changed")
        if truncation.dropped.contains(where: { $0.entry.nameText == "a" }) {
            throw CrashInvariantViolation("the truncation from position 1 dropped step a: \(truncation.dropped)")
        }
        world.state.withLock { $0.truncated = true }
    }
    let changed = try await ledger.journal(run: "r")
    world.returned(0, try await changed.step("a") { 1 })
    world.returned(1, try await changed.step("b.new") { 20 })
    world.returned(2, try await changed.step("c.new") { 30 })
    try await changed.finish(.succeeded)
}

private func check(_ ledger: Ledger, _ world: TruncationWorld, _ epoch: LedgerCrashRunner.Epoch) async throws {
    let state = world.state.withLock { $0 }
    if !state.problems.isEmpty { throw CrashInvariantViolation(state.problems.joined(separator: "; ")) }
    guard try await !ledger.runs(run: "r").isEmpty else {
        if state.recorded { throw CrashInvariantViolation("run r recorded its steps and is gone") }
        return
    }
    let records = try await ledger.journalRecords(run: "r")
    let names = records.map { $0.entry.kind == .truncated ? "(truncated)" : $0.entry.nameText }
    if state.recorded, records.count < 3 {
        throw CrashInvariantViolation("run r recorded three steps; its journal holds \(names)")
    }
    if state.truncated, names.contains("b.old") || names.contains("c.old") {
        throw CrashInvariantViolation("the truncation returned, yet an old step is back: \(names)")
    }
    let output: [UInt64: Int] = [1: 20, 2: 30]
    for (position, value) in state.returned where position > 0 {
        guard Int(position) < records.count, records[Int(position)].entry.kind != .truncated,
              records[Int(position)].entry.nameText == (position == 1 ? "b.new" : "c.new"), output[position] == value
        else {
            throw CrashInvariantViolation("position \(position) returned \(value) to the changed code; the journal holds \(names)")
        }
    }
    if epoch.isEnd {
        guard try await ledger.runs(run: "r").contains(where: { $0.status == .succeeded }) else {
            throw CrashInvariantViolation("the run did not end")
        }
        if Array(names.prefix(3)) != ["a", "b.new", "c.new"] || names.dropFirst(3).contains(where: { $0 != "(truncated)" }) {
            throw CrashInvariantViolation("the ended run's journal is \(names)")
        }
    }
}

@Suite struct JournalTruncationCrashTests {
    @Test func aTruncationCrashedAtEveryStepFreesEveryPositionWhenRunAgain() async {
        let report = await LedgerCrashRunner().run(
            world: { TruncationWorld() },
            workload: { ledger, world, epoch in try await workload(ledger, world, epoch) },
            check: { ledger, world, epoch in try await check(ledger, world, epoch) })
        #expect(report.passed, "\(report)")
        #expect(report.crashedAtPoint > 0)
        print("JournalTruncationCrashTests: \(report)")
    }
}

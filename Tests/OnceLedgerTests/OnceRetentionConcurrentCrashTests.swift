// Retention under the crash runner with the compaction running beside `once` calls: keys whose
// `.window(0)` scope let go of them (the runner's clock is fixed, so a zero window has always
// passed), released keys and forgotten keys are dropped by a compaction (its snapshot written
// on its own thread) while the same keys are claimed again; a crash at every I/O step, power loss
// or process kill, reopen and rerun. No effect is ever handed the token of a run that finished.
import OnceLedger
import OnceLedgerTestSupport
import Synchronization
import Testing

private final class FinishedTokens: Sendable {
    /// Tokens of runs whose `once` returned: their effect is done.
    let finished = Mutex<Set<String>>([])
    let violations = Mutex<[String]>([])

    func handed(_ key: String, _ token: String) {
        if finished.withLock({ $0.contains(token) }) {
            violations.withLock { $0.append("\(key) was handed \(token), the token of a finished run") }
        }
    }
}

private func concurrentRetentionWorkload(_ ledger: Ledger, _ world: FinishedTokens) async throws {
    @Sendable func run(_ key: String, _ scope: DeduplicationScope) async throws {
        let outcome = try await ledger.onceBytes(IdempotencyKey(key), scope: scope, whenPending: .retry) { effect in
            world.handed(key, effect.token)
            return [1]
        }
        world.finished.withLock { _ = $0.insert(outcome.entry.token) }
    }
    @Sendable func release(_ key: String) async throws {
        do {
            try await ledger.onceBytes(IdempotencyKey(key), whenPending: .retry) { effect in
                world.handed(key, effect.token)
                throw EffectDidNotHappen("declined")
            }
        } catch let error as LedgerError where error.code == .released {}
    }
    @Sendable func forget(_ key: String) async throws {
        if try await ledger.entry(key)?.status == .done {
            try await ledger.forgetDoneEntryAllowingRerun(key, reason: "run it again")
        }
    }
    try await run("w", .window(milliseconds: 0))
    try await run("w", .window(milliseconds: 0))
    try await release("r")
    try await run("f", .forever)
    try await forget("f")
    // The compaction drops w, r and f while they are claimed again.
    async let compacted: Void = ledger.compact()
    async let window: Void = run("w", .window(milliseconds: 0))
    async let released: Void = release("r")
    async let forgotten: Void = run("f", .forever)
    _ = try await (compacted, window, released, forgotten)
    try await forget("f")
    try await ledger.compact()
    try await run("f", .forever)
    try await run("w", .window(milliseconds: 0))
}

@Suite struct OnceRetentionConcurrentCrashTests {
    @Test func aCompactionBesideClaimsOfTheKeysItDropsNeverReissuesAFinishedToken() async {
        let report = await LedgerCrashRunner().run(
            world: { FinishedTokens() },
            workload: { ledger, world, _ in try await concurrentRetentionWorkload(ledger, world) },
            check: { _, world, _ in
                if let violation = world.violations.withLock({ $0.first }) { throw CrashInvariantViolation(violation) }
            })
        #expect(report.passed, "\(report)")
        #expect(report.crashedAtPoint > 0)
    }
}

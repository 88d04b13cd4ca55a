// Proves the concurrency rules on both backends: 64 tasks calling `once` on one key at the same
// moment run the effect exactly once and the other 63 receive its outcome (already done with the
// same receipt); if it fails, no waiter receives its error: each decides again under its own
// policy (pending-unknown → its fail-closed error; released → one of them runs it); different keys run concurrently and, on the file log, share group
// commits (fewer fdatasync batches than records); a caller that arrives while an operator is
// resolving or forgetting the key waits and then sees the new state. Races are made
// deterministic by holding the effect until the expected callers are waiting, not by sleeping.
import Foundation
@testable import OnceLedger
import OnceLedgerFormat
@testable import OnceLedgerLog
import Synchronization
import Testing
import OnceLedgerStoreContract

private let callers = 64

@Suite struct ConcurrencyTests {
    @Test(arguments: BackendKind.allCases)
    func sixtyFourCallersOnOneKeyRunTheEffectOnce(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let runs = Counter()
        let outcomes = try await withThrowingTaskGroup(of: OnceOutcome<String>.self) { group in
            for _ in 0..<callers {
                group.addTask {
                    try await ledger.once("hot", as: String.self) { context in
                        runs.increment()
                        // Hold the effect until every other caller is waiting on it.
                        try await waitUntil("\(callers - 1) callers wait") { ledger.waiterCount("hot") == callers - 1 }
                        return "receipt:\(context.token)"
                    }
                }
            }
            var all: [OnceOutcome<String>] = []
            for try await outcome in group { all.append(outcome) }
            return all
        }
        #expect(runs.count == 1, "exactly one caller runs the effect")
        #expect(outcomes.count == callers)
        #expect(outcomes.filter(\.wasPerformed).count == 1)
        let receipt = "receipt:" + EffectToken.derive(key: "hot", generation: 0, scope: ledger.tokenScope)
        #expect(outcomes.allSatisfy { $0.receipt == receipt })
        #expect(outcomes.allSatisfy { $0.entry.status == .done && $0.entry.attempt == 1 })
        #expect(try harness.keyRecords("hot").map(\.kind) == [.intent, .completion])
        #expect(!ledger.isRunning("hot"))
    }

    /// The runner's failure is its own: the 63 waiters do not receive its `.effectFailed`,
    /// they decide again under their own policy (fail-closed: the key is now pending-unknown).
    @Test(arguments: BackendKind.allCases)
    func waitersDoNotInheritTheRunnersErrorAndDecideUnderTheirOwnPolicy(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let runs = Counter()
        let results = await withTaskGroup(of: Result<OnceOutcome<String>, any Error>.self) { group in
            for _ in 0..<callers {
                group.addTask {
                    do {
                        return .success(try await ledger.once("hot-fail", as: String.self) { _ in
                            runs.increment()
                            try await waitUntil("\(callers - 1) callers wait") { ledger.waiterCount("hot-fail") == callers - 1 }
                            throw TestFailure("downstream timed out")
                        })
                    } catch {
                        return .failure(error)
                    }
                }
            }
            var all: [Result<OnceOutcome<String>, any Error>] = []
            for await result in group { all.append(result) }
            return all
        }
        #expect(runs.count == 1)
        #expect(results.count == callers)
        var codes: [LedgerError.Code: Int] = [:]
        for result in results {
            guard case .failure(let error) = result, let error = error as? LedgerError else {
                Issue.record("expected a LedgerError, got \(result)")
                continue
            }
            codes[error.code, default: 0] += 1
            if error.code == .effectFailed {
                #expect((error.underlyingError as? TestFailure)?.description == "downstream timed out")
            } else {
                #expect(error.code == .pendingUnknown)
                #expect(error.entry?.status == .pendingUnknown && error.entry?.attempt == 1)
            }
        }
        #expect(codes == [.effectFailed: 1, .pendingUnknown: callers - 1])
        #expect(try await ledger.entry("hot-fail")?.status == .pendingUnknown)
        #expect(try harness.keyRecords("hot-fail").map(\.kind) == [.intent])
    }

    /// A runner that releases (`EffectDidNotHappen`) gets `.released`; its waiters find the
    /// key absent, and one of them claims it and runs the effect for all the others.
    @Test(arguments: BackendKind.allCases)
    func waitersOfAReleasedRunRunTheEffectThemselves(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let runs = Counter()
        let results = await withTaskGroup(of: Result<OnceOutcome<String>, any Error>.self) { group in
            for _ in 0..<callers {
                group.addTask {
                    do {
                        return .success(try await ledger.once("hot-release", as: String.self) { context in
                            if runs.increment() == 1 {
                                try await waitUntil("\(callers - 1) callers wait") { ledger.waiterCount("hot-release") == callers - 1 }
                                throw EffectDidNotHappen("rate limited before sending")
                            }
                            return "sent on attempt \(context.attempt)"
                        })
                    } catch {
                        return .failure(error)
                    }
                }
            }
            var all: [Result<OnceOutcome<String>, any Error>] = []
            for await result in group { all.append(result) }
            return all
        }
        #expect(runs.count == 2)
        let failures = results.compactMap { result -> LedgerError? in
            if case .failure(let error) = result { return error as? LedgerError }
            return nil
        }
        let outcomes = results.compactMap { try? $0.get() }
        #expect(failures.count == 1)
        #expect(failures.first?.code == .released)
        #expect((failures.first?.underlyingError as? EffectDidNotHappen)?.reason == "rate limited before sending")
        #expect(outcomes.count == callers - 1)
        #expect(outcomes.filter(\.wasPerformed).count == 1)
        #expect(outcomes.allSatisfy { $0.receipt == "sent on attempt 2" })
        #expect(try await ledger.entry("hot-release")?.status == .done)
        #expect(try harness.keyRecords("hot-release").map(\.kind) == [.intent, .release, .intent, .completion])
    }

    /// Different keys: every effect waits until all are running at once (impossible if they
    /// were serialized), and their intents and completions share commit batches.
    @Test(arguments: BackendKind.allCases)
    func differentKeysRunConcurrentlyAndShareGroupCommits(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let fileStore = ledger.store as? FileStore
        let before = fileStore?.engine?.commitStatistics
        let running = Counter()
        let outcomes = try await withThrowingTaskGroup(of: OnceOutcome<String>.self) { group in
            for index in 0..<callers {
                group.addTask {
                    try await ledger.once(IdempotencyKey("key-\(index)"), as: String.self) { context in
                        running.increment()
                        try await waitUntil("all \(callers) effects run at once") { running.count == callers }
                        return "done:\(context.key)"
                    }
                }
            }
            var all: [OnceOutcome<String>] = []
            for try await outcome in group { all.append(outcome) }
            return all
        }
        #expect(outcomes.count == callers)
        #expect(outcomes.allSatisfy { $0.wasPerformed })
        #expect(Set(outcomes.map(\.receipt)).count == callers)
        #expect(try await ledger.entries(status: .done).count == callers)
        if kind == .file {
            let engine = try #require(fileStore?.engine)
            let stats = engine.commitStatistics
            let records = stats.records - (before?.records ?? 0)
            let batches = stats.batches - (before?.batches ?? 0)
            #expect(records == UInt64(2 * callers), "one intent and one completion per key")
            #expect(batches < records, "group commit: \(batches) batches for \(records) records")
        }
        let reopened = try harness.reopen(ledger)
        defer { try? reopened.close() }
        #expect(try await reopened.entries(status: .done).count == callers)
    }

    /// While an operator's resolve record is on its way to the disk, a caller of the same key
    /// must neither fail with a misleading error nor run the effect: it waits, then sees the
    /// resolution.
    @Test func callerDuringAnOperatorResolveWaitsForIt() async throws {
        let harness = Harness(.memory)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        _ = await ledgerError { try await ledger.once("k", as: String.self) { _ in throw TestFailure() } }
        let hold = harness.recordLog.holdNextAppend()
        let resolving = Task {
            try await ledger.resolvePending("k", as: .done(receipt: Array("\"manual\"".utf8)), reason: "seen downstream")
        }
        await hold.entered.wait()
        let runs = Counter()
        let callerDone = Gate()
        let caller = Task {
            defer { callerDone.open() }
            return try await ledger.once("k", as: String.self) { _ in
                runs.increment()
                return "ran"
            }
        }
        try await waitUntil("the caller waits or finishes") { ledger.waiterCount("k") == 1 || callerDone.isOpen }
        hold.release.open()
        try await resolving.value
        let result = await caller.result
        guard case .success(let outcome) = result else {
            Issue.record("the caller must get the resolution, got \(result)")
            return
        }
        #expect(!outcome.wasPerformed)
        #expect(outcome.receipt == "manual")
        #expect(runs.count == 0)
    }

    @Test func callerDuringAnOperatorForgetWaitsThenRuns() async throws {
        let harness = Harness(.memory)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        _ = try await ledger.once("k", as: String.self) { _ in "first" }
        let hold = harness.recordLog.holdNextAppend()
        let forgetting = Task { try await ledger.forgetDoneEntryAllowingRerun("k", reason: "resend") }
        await hold.entered.wait()
        let callerDone = Gate()
        let caller = Task {
            defer { callerDone.open() }
            return try await ledger.once("k", as: String.self) { context in
                #expect(context.generation == 1)
                return "second"
            }
        }
        try await waitUntil("the caller waits or finishes") { ledger.waiterCount("k") == 1 || callerDone.isOpen }
        hold.release.open()
        try await forgetting.value
        let result = await caller.result
        guard case .success(let outcome) = result else {
            Issue.record("the caller must run after the forget, got \(result)")
            return
        }
        #expect(outcome.wasPerformed)
        #expect(outcome.receipt == "second")
    }
}

/// `ledger.executor`: `once` from tasks that prefer it behaves as on the default executor
/// (performed once, duplicates get the stored receipt, concurrent same-key callers run the
/// effect once), the effect runs on its thread, and after `close()` such a task still runs.
@Suite struct LedgerExecutorTests {
    @Test(.timeLimit(.minutes(5)), arguments: BackendKind.allCases)
    func onceOnTheLedgerExecutor(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        let executor = ledger.executor
        #expect(ledger.executor === executor, "one executor per ledger")
        let effectThreads = Mutex(Set<UInt>())
        let outcomes = try await withTaskExecutorPreference(executor) { [ledger] in
            var outcomes: [OnceOutcome<String>] = []
            for index in 0..<40 {
                outcomes.append(try await ledger.once(IdempotencyKey("x-\(index % 20)"), as: String.self) { _ in
                    effectThreads.withLock { _ = $0.insert(UInt(pthread_self())) }
                    return "r\(index)"
                })
            }
            return outcomes
        }
        #expect(outcomes.prefix(20).allSatisfy { $0.wasPerformed })
        #expect(outcomes.suffix(20).allSatisfy { !$0.wasPerformed })
        #expect(outcomes.suffix(20).map(\.receipt) == (0..<20).map { "r\($0)" })
        #expect(effectThreads.withLock { $0 } == [executor.threadID.load(ordering: .relaxed)])

        // Concurrent callers of one key, all on the executor: one effect run.
        final class Runs: Sendable { let count = Mutex(0) }
        let runs = Runs()
        let gate = Gate()
        let results = try await withTaskExecutorPreference(executor) { [ledger] in
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        try await ledger.once("shared", as: String.self) { _ in
                            runs.count.withLock { $0 += 1 }
                            await gate.wait()
                            return "once"
                        }.wasPerformed
                    }
                }
                while ledger.waiterCount("shared") < 7 { await Task.yield() }
                gate.open()
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
        }
        #expect(runs.count.withLock { $0 } == 1)
        #expect(results.filter { $0 }.count == 1)

        // After close the executor's thread stops; a task that still prefers it runs elsewhere.
        ledger = try harness.reopen(ledger)
        await executor.stopped()
        let late = try await withTaskExecutorPreference(executor) { [ledger] in
            try await ledger.once("after-close", as: String.self) { _ in "late" }
        }
        #expect(late.wasPerformed)
        #expect(ledger.executor !== executor, "the reopened ledger has its own")
    }

    /// A ledger released without `close()` stops its executor's thread too.
    @Test(.timeLimit(.minutes(5))) func droppingTheLedgerStopsTheExecutor() async throws {
        var ledger: Ledger? = Ledger.inMemory()
        let executor = try #require(ledger?.executor)
        _ = try await withTaskExecutorPreference(executor) { [ledger] in
            try await ledger?.once("k", as: String.self) { _ in "r" }
        }
        ledger = nil
        await executor.stopped()
        #expect(executor.hasStopped)
    }
}

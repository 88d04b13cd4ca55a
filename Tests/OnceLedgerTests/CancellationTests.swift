// Proves the cancellation rules of `once` and that no caller inherits another caller's failure:
// a caller cancelled before it claims a key writes nothing and throws `CancellationError` (and
// does not ask its reconcile closure about a pending key); one
// cancelled while its intent is being written releases it without starting the effect; one
// cancelled while its effect runs does not cancel the effect (it runs outside the caller's task)
// and its completion is recorded, so the key is done, never stranded pending-unknown; a waiter
// is not failed by the runner's cancellation, and a waiter whose runner's effect threw decides
// again under its own policy (here `.retry`: it runs the effect itself, with the same token).
// Tasks are ordered with gates (continuations) and the in-flight waiter count, never by sleeping.
import Foundation
@testable import OnceLedger
import OnceLedgerFormat
import Testing
import OnceLedgerStoreContract

@Suite struct CancellationTests {
    /// The caller's task is cancelled before it calls `once`: nothing is written.
    @Test(arguments: BackendKind.allCases)
    func aCallerCancelledBeforeTheIntentWritesNothing(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let runs = Counter()
        let cancelled = Gate()
        let caller = Task {
            await cancelled.wait()
            return try await ledger.once("order-1", as: String.self) { _ in
                runs.increment()
                return "charged"
            }
        }
        caller.cancel()
        cancelled.open()
        let result = await caller.result
        #expect(throws: CancellationError.self) { try result.get() }
        #expect(runs.count == 0)
        #expect(try await ledger.entry("order-1") == nil)
        #expect(try harness.keyRecords("order-1").isEmpty)
        #expect(!ledger.isRunning("order-1"))
        // The key is simply absent: the next caller runs it.
        #expect(try await ledger.once("order-1", as: String.self) { _ in "charged" }.wasPerformed)
    }

    /// A cancelled caller of a pending key with `.reconcile` does not ask: nothing is written
    /// and the key stays pending-unknown for the next caller.
    @Test(arguments: BackendKind.allCases)
    func aCancelledCallerDoesNotReconcile(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let failed = await ledgerError { try await ledger.once("order-6", as: String.self) { _ in throw TestFailure() } }
        #expect(failed?.code == .effectFailed)
        let written = try harness.keyedRecordCount()
        let asked = Counter()
        let cancelled = Gate()
        let caller = Task {
            await cancelled.wait()
            return try await ledger.once("order-6", as: String.self, whenPending: .reconcile { _ in
                asked.increment()
                return .didNotHappen
            }) { _ in "sent" }
        }
        caller.cancel()
        cancelled.open()
        let result = await caller.result
        #expect(throws: CancellationError.self) { try result.get() }
        #expect(asked.count == 0)
        #expect(try await ledger.entry("order-6")?.status == .pendingUnknown)
        #expect(try harness.keyedRecordCount() == written)
        #expect(!ledger.isRunning("order-6"))
    }

    /// Cancelled while its intent is on its way to the disk: the intent is released, the
    /// effect never starts, and the key is absent (not pending-unknown).
    @Test func aCallerCancelledWhileTheIntentIsWrittenReleasesIt() async throws {
        let harness = Harness(.memory)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let runs = Counter()
        let hold = harness.recordLog.holdNextAppend()
        let caller = Task {
            try await ledger.once("order-2", as: String.self) { _ in
                runs.increment()
                return "charged"
            }
        }
        await hold.entered.wait()
        caller.cancel()
        hold.release.open()
        let result = await caller.result
        #expect(throws: CancellationError.self) { try result.get() }
        #expect(runs.count == 0)
        #expect(try await ledger.entry("order-2")?.status == .absent)
        #expect(try harness.keyRecords("order-2").map(\.kind) == [.intent, .release])
        #expect(!ledger.isRunning("order-2"))
    }

    /// Cancelled while the effect runs (a client disconnect): the effect does not see the
    /// cancellation, its completion is recorded, and the caller gets the outcome.
    @Test(arguments: BackendKind.allCases)
    func aCallerCancelledWhileTheEffectRunsStillRecordsTheCompletion(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        let started = Gate()
        let proceed = Gate()
        let sawCancellation = Counter()
        let caller = Task { [ledger] in
            try await ledger.once("charge-3", as: String.self) { effect in
                started.open()
                await proceed.wait()
                // What an HTTP client does when its task is cancelled.
                if Task.isCancelled { sawCancellation.increment() }
                try Task.checkCancellation()
                return "ch_3 \(effect.token)"
            }
        }
        await started.wait()
        caller.cancel()
        proceed.open()
        let outcome = try await caller.value
        #expect(sawCancellation.count == 0)
        #expect(outcome.wasPerformed)
        #expect(outcome.receipt == "ch_3 " + EffectToken.derive(key: "charge-3", generation: 0, scope: ledger.tokenScope))
        #expect(try await ledger.entry("charge-3")?.status == .done)
        #expect(try harness.keyRecords("charge-3").map(\.kind) == [.intent, .completion])
        ledger = try harness.reopen(ledger)
        #expect(try await ledger.entry("charge-3")?.status == .done)
    }

    /// A waiter on a key whose runner's caller is cancelled gets the runner's receipt, not
    /// a cancellation caused by another client.
    @Test(arguments: BackendKind.allCases)
    func aWaiterIsNotFailedByTheRunnersCancellation(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let started = Gate()
        let proceed = Gate()
        let runs = Counter()
        let effect: @Sendable (EffectContext) async throws -> String = { _ in
            runs.increment()
            started.open()
            await proceed.wait()
            try Task.checkCancellation()
            return "sent"
        }
        let runner = Task { try await ledger.once("mail-4", as: String.self, effect) }
        await started.wait()
        let waiter = Task { try await ledger.once("mail-4", as: String.self, effect) }
        try await waitUntil("the second caller waits") { ledger.waiterCount("mail-4") == 1 }
        runner.cancel()
        proceed.open()
        let waited = try await waiter.value
        let ran = try await runner.value
        #expect(runs.count == 1)
        #expect(ran.wasPerformed && ran.receipt == "sent")
        #expect(!waited.wasPerformed && waited.receipt == "sent")
        #expect(try await ledger.entry("mail-4")?.status == .done)
    }

    /// The runner (fail-closed) sees its effect throw; the waiter, on `.retry`, is not handed
    /// that error: it finds the key pending-unknown and retries it, with the same token.
    @Test(arguments: BackendKind.allCases)
    func aWaiterWhoseRunnerFailedAppliesItsOwnPolicy(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let started = Gate()
        let proceed = Gate()
        let runs = Counter()
        let runner = Task {
            try await ledger.once("charge-5", as: String.self) { _ in
                runs.increment()
                started.open()
                await proceed.wait()
                throw TestFailure("gateway timeout")
            }
        }
        await started.wait()
        let waiter = Task {
            try await ledger.once("charge-5", as: String.self, whenPending: .retry) { effect in
                runs.increment()
                return "attempt \(effect.attempt) \(effect.token)"
            }
        }
        try await waitUntil("the second caller waits") { ledger.waiterCount("charge-5") == 1 }
        proceed.open()
        let runnerError = await ledgerError { try await runner.value }
        #expect(runnerError?.code == .effectFailed)
        let outcome = try await waiter.value
        #expect(runs.count == 2)
        #expect(outcome.wasPerformed)
        #expect(outcome.receipt == "attempt 2 " + EffectToken.derive(key: "charge-5", generation: 0, scope: ledger.tokenScope))
        #expect(try harness.keyRecords("charge-5").map(\.kind) == [.intent, .intent, .completion])
    }
}

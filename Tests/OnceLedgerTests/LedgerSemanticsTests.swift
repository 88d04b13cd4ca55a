// Proves the exactly-once semantics of `Ledger` on both stores with one shared suite: every
// test runs once on the FileStore (a fresh temp directory, reopened with `Ledger.open`) and once
// on an InMemoryStore (reopened as a new store on the same in-memory record list). It covers each key state × pending policy (absent, done, pending-unknown made three
// ways × fail-closed / retry / reconcile happened / reconcile did-not-happen), release, scopes
// under a manual clock, fingerprint mismatch, operator resolve/forget and their audit records
// (read back from the log itself), typed errors for bad input with nothing written, and that
// compaction and reopening keep every key's state.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import Testing
import OnceLedgerStoreContract

/// How a key became pending-unknown.
enum PendingOrigin: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// The effect threw an error other than `EffectDidNotHappen` (the ledger stays open).
    case effectThrew
    /// The process "died" during the effect: the ledger was closed with the effect
    /// suspended, then reopened; the late completion fails.
    case crashDuringEffect
    /// Only an intent record is in the log (written while no ledger was open), then opened.
    case intentOnlyInLog
    var testDescription: String { rawValue }
}

private func json(_ text: String) -> [UInt8] { Array("\"\(text)\"".utf8) }

private let intentTime: UInt64 = 5_000
private let laterTime: UInt64 = 6_000

/// Makes `key` pending-unknown (attempt 1, generation 0, intent at `intentTime`) and
/// returns the ledger to continue with (a reopened one for the crash origins).
private func makePending(_ harness: Harness, _ ledger: Ledger, _ key: String, _ origin: PendingOrigin) async throws -> Ledger {
    harness.clock.set(intentTime)
    let current: Ledger
    switch origin {
    case .effectThrew:
        let error = await ledgerError { try await ledger.once(IdempotencyKey(key), as: String.self) { _ in throw TestFailure() } }
        #expect(error?.code == .effectFailed)
        #expect(error?.key == key)
        #expect((error?.underlyingError as? TestFailure) == TestFailure())
        #expect(error?.entry?.status == .pendingUnknown)
        current = ledger
    case .crashDuringEffect:
        let started = Gate()
        let proceed = Gate()
        let doomed = Task {
            try await ledger.once(IdempotencyKey(key), as: String.self) { _ in
                started.open()
                await proceed.wait()
                return "too late"
            }
        }
        await started.wait()
        current = try harness.reopen(ledger)
        proceed.open()
        let result = await doomed.result
        if case .success = result { Issue.record("a completion after close must not succeed") }
        #expect(try await current.entry(key)?.status == .pendingUnknown, "the late completion must not reach the reopened ledger")
    case .intentOnlyInLog:
        try ledger.close()
        try await harness.appendRaw([.intent(.init(key: key, attempt: 1, generation: 0, timeMilliseconds: intentTime))])
        current = try harness.open()
    }
    let entry = try #require(try await current.entry(key))
    #expect(entry.status == .pendingUnknown)
    #expect(entry.attempt == 1)
    #expect(entry.generation == 0)
    #expect(entry.timeMilliseconds == intentTime)
    #expect(entry.token == EffectToken.derive(key: key, generation: 0, scope: ledger.tokenScope))
    #expect(try await current.pendingEntries().map(\.key).contains(key))
    let keyRecords = try harness.keyRecords(key)
    #expect(keyRecords.map(\.kind) == [.intent], "only the intent is in the log")
    harness.clock.set(laterTime)
    return current
}

@Suite struct LedgerSemanticsTests {
    // MARK: Absent and done

    @Test(arguments: BackendKind.allCases)
    func absentKeyRunsTheEffectWithIntentDurableFirst(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        harness.clock.set(1_000)
        let runs = Counter()
        let outcome = try await ledger.once("k-absent", as: String.self) { context in
            runs.increment()
            #expect(context.key == "k-absent")
            #expect(context.attempt == 1)
            #expect(context.generation == 0)
            #expect(context.token == EffectToken.derive(key: "k-absent", generation: 0, scope: ledger.tokenScope))
            // The intent is in the log, durable, before the effect starts; no completion yet.
            let records = try harness.keyRecords("k-absent")
            #expect(records.map(\.kind) == [.intent])
            if case .intent(let intent) = records.first {
                #expect(intent.attempt == 1)
                #expect(intent.timeMilliseconds == 1_000)
                #expect(intent.fingerprint == IdempotencyKey.noFingerprint)
            }
            if let engine = (ledger.store as? FileStore)?.engine {
                #expect(engine.durableSequence == engine.lastSequence, "everything appended is fdatasync'd")
            }
            harness.clock.set(1_250)
            return "sent:\(context.token)"
        }
        #expect(runs.count == 1)
        guard case .performed(let receipt, let entry) = outcome else {
            Issue.record("expected performed, got \(outcome)")
            return
        }
        #expect(receipt == "sent:" + EffectToken.derive(key: "k-absent", generation: 0, scope: ledger.tokenScope))
        #expect(entry.status == .done)
        #expect(entry.attempt == 1)
        #expect(entry.timeMilliseconds == 1_250, "completed at the completion's time")
        #expect(entry.receipt == json(receipt))
        // The completion is durable before once returns.
        let records = try harness.keyRecords("k-absent")
        #expect(records.map(\.kind) == [.intent, .completion])
        if case .completion(let completion) = records.last {
            #expect(completion.receipt == json(receipt))
            #expect(completion.attempt == 1)
            #expect(completion.timeMilliseconds == 1_250)
        }
        if let engine = (ledger.store as? FileStore)?.engine {
            #expect(engine.durableSequence == engine.lastSequence)
        }
    }

    @Test(arguments: BackendKind.allCases)
    func doneKeySkipsWithStoredReceiptAndCompletionTime(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        harness.clock.set(1_000)
        _ = try await ledger.once("k-done", as: String.self) { _ in "receipt-1" }
        let written = try harness.keyedRecordCount()
        harness.clock.set(99_000)
        let runs = Counter()
        for round in 0..<2 {
            let outcome = try await ledger.once("k-done", as: String.self) { _ in
                runs.increment()
                return "receipt-2"
            }
            guard case .alreadyDone(let receipt, let entry) = outcome else {
                Issue.record("round \(round): expected alreadyDone, got \(outcome)")
                continue
            }
            #expect(receipt == "receipt-1")
            #expect(entry.status == .done)
            #expect(entry.timeMilliseconds == 1_000, "when it completed, not now")
            #expect(entry.attempt == 1)
            #expect(!outcome.wasPerformed)
            ledger = try harness.reopen(ledger)
        }
        #expect(runs.count == 0)
        #expect(try harness.keyedRecordCount() == written, "a skip writes nothing")
        #expect(try harness.keyRecords("k-done").map(\.kind) == [.intent, .completion])
    }

    // MARK: Pending-unknown × policy

    @Test(arguments: BackendKind.allCases, PendingOrigin.allCases)
    func pendingFailClosedThrowsCarryingTheIntent(_ kind: BackendKind, _ origin: PendingOrigin) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        ledger = try await makePending(harness, ledger, "k-pending", origin)
        let written = try harness.keyedRecordCount()
        let runs = Counter()
        for policy in [PendingPolicy<String>.failClosed, .failClosed] {
            let error = await ledgerError {
                try await ledger.once("k-pending", as: String.self, whenPending: policy) { _ in
                    runs.increment()
                    return "x"
                }
            }
            #expect(error?.code == .pendingUnknown)
            #expect(error?.key == "k-pending")
            let entry = try #require(error?.entry)
            #expect(entry.key == "k-pending")
            #expect(entry.status == .pendingUnknown)
            #expect(entry.attempt == 1)
            #expect(entry.timeMilliseconds == intentTime, "when the intent was written")
            #expect(entry.token == EffectToken.derive(key: "k-pending", generation: 0, scope: ledger.tokenScope))
        }
        // The default policy is fail-closed.
        let byDefault = await ledgerError { try await ledger.once("k-pending", as: String.self) { _ in runs.increment(); return "x" } }
        #expect(byDefault?.code == .pendingUnknown)
        #expect(runs.count == 0)
        #expect(try harness.keyedRecordCount() == written, "failing closed writes nothing")
        // Never silently turned into anything: still pending after a reopen.
        ledger = try harness.reopen(ledger)
        #expect(try await ledger.entry("k-pending")?.status == .pendingUnknown)
        #expect(try await ledger.pendingEntries().map(\.key) == ["k-pending"])
    }

    @Test(arguments: BackendKind.allCases, PendingOrigin.allCases)
    func pendingRetryRunsAgainWithNextAttemptAndSameToken(_ kind: BackendKind, _ origin: PendingOrigin) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        ledger = try await makePending(harness, ledger, "k-retry", origin)
        let token = EffectToken.derive(key: "k-retry", generation: 0, scope: ledger.tokenScope)
        let runs = Counter()
        let outcome = try await ledger.once("k-retry", as: String.self, whenPending: .retry) { context in
            runs.increment()
            #expect(context.attempt == 2)
            #expect(context.generation == 0)
            #expect(context.token == token, "a retry of one pending entry keeps the token")
            return "retried:\(context.token)"
        }
        #expect(runs.count == 1)
        #expect(outcome.wasPerformed)
        #expect(outcome.receipt == "retried:\(token)")
        #expect(outcome.entry.status == .done)
        #expect(outcome.entry.attempt == 2)
        #expect(outcome.entry.timeMilliseconds == laterTime)
        let records = try harness.keyRecords("k-retry")
        #expect(records.map(\.kind) == [.intent, .intent, .completion])
        if case .intent(let intent) = records[1] { #expect(intent.attempt == 2) }
        ledger = try harness.reopen(ledger)
        let again = try await ledger.once("k-retry", as: String.self, whenPending: .retry) { _ in runs.increment(); return "x" }
        #expect(!again.wasPerformed)
        #expect(again.receipt == "retried:\(token)")
        #expect(runs.count == 1)
    }

    @Test(arguments: BackendKind.allCases, PendingOrigin.allCases)
    func pendingReconcileHappenedRecordsTheReceiptWithoutRunning(_ kind: BackendKind, _ origin: PendingOrigin) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        ledger = try await makePending(harness, ledger, "k-reconciled", origin)
        let asked = Counter()
        let runs = Counter()
        let outcome = try await ledger.once(
            "k-reconciled", as: String.self,
            whenPending: .reconcile { entry in
                asked.increment()
                #expect(entry.key == "k-reconciled")
                #expect(entry.status == .pendingUnknown)
                #expect(entry.attempt == 1)
                #expect(entry.token == EffectToken.derive(key: "k-reconciled", generation: 0, scope: entry.tokenScope))
                return .happened("found-downstream")
            }
        ) { _ in
            runs.increment()
            return "ran"
        }
        #expect(asked.count == 1)
        #expect(runs.count == 0, "reconciled as happened: the effect must not run")
        guard case .alreadyDone(let receipt, let entry) = outcome else {
            Issue.record("expected alreadyDone, got \(outcome)")
            return
        }
        #expect(receipt == "found-downstream")
        #expect(entry.status == .done)
        #expect(entry.attempt == 1)
        #expect(entry.timeMilliseconds == laterTime)
        let records = try harness.keyRecords("k-reconciled")
        #expect(records.map(\.kind) == [.intent, .resolve])
        if case .resolve(let resolve) = records.last {
            #expect(resolve.outcome == .done)
            #expect(resolve.receipt == json("found-downstream"))
            #expect(resolve.attempt == 1)
            #expect(!resolve.actor.isEmpty)
            #expect(!resolve.reason.isEmpty)
            #expect(resolve.timeMilliseconds == laterTime)
        }
        ledger = try harness.reopen(ledger)
        let again = try await ledger.once("k-reconciled", as: String.self) { _ in runs.increment(); return "x" }
        #expect(!again.wasPerformed)
        #expect(again.receipt == "found-downstream")
        #expect(runs.count == 0)
    }

    @Test(arguments: BackendKind.allCases, PendingOrigin.allCases)
    func pendingReconcileDidNotHappenRunsNow(_ kind: BackendKind, _ origin: PendingOrigin) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        ledger = try await makePending(harness, ledger, "k-not-happened", origin)
        let token = EffectToken.derive(key: "k-not-happened", generation: 0, scope: ledger.tokenScope)
        let asked = Counter()
        let runs = Counter()
        let outcome = try await ledger.once(
            "k-not-happened", as: String.self,
            whenPending: .reconcile { _ in
                asked.increment()
                return .didNotHappen
            }
        ) { context in
            runs.increment()
            #expect(context.attempt == 2)
            #expect(context.token == token)
            return "sent-now"
        }
        #expect(asked.count == 1)
        #expect(runs.count == 1)
        #expect(outcome.wasPerformed)
        #expect(outcome.receipt == "sent-now")
        #expect(outcome.entry.attempt == 2)
        let records = try harness.keyRecords("k-not-happened")
        #expect(records.map(\.kind) == [.intent, .resolve, .intent, .completion])
        if case .resolve(let resolve) = records[1] {
            #expect(resolve.outcome == .absent)
            #expect(resolve.attempt == 1)
            #expect(!resolve.reason.isEmpty)
        }
        ledger = try harness.reopen(ledger)
        #expect(try await ledger.entry("k-not-happened")?.status == .done)
        #expect(try await ledger.entry("k-not-happened")?.attempt == 2)
    }

    /// A reconcile closure that throws leaves the key pending and writes nothing.
    @Test(arguments: BackendKind.allCases)
    func pendingReconcileThatThrowsChangesNothing(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        ledger = try await makePending(harness, ledger, "k", .effectThrew)
        let written = try harness.keyedRecordCount()
        let error = await ledgerError {
            try await ledger.once("k", as: String.self, whenPending: .reconcile { _ in throw TestFailure() }) { _ in "x" }
        }
        #expect(error?.code == .reconcileFailed)
        #expect(error?.underlyingError as? TestFailure == TestFailure())
        #expect(error?.entry?.status == .pendingUnknown)
        #expect(try await ledger.entry("k")?.status == .pendingUnknown)
        #expect(try harness.keyedRecordCount() == written)
        #expect(!ledger.isRunning("k"))
    }

    // MARK: Effect errors: release vs pending

    @Test(arguments: BackendKind.allCases)
    func effectDidNotHappenReleasesTheIntentAndKeepsTheAttemptCount(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        harness.clock.set(1_000)
        let released = await ledgerError {
            try await ledger.once("k-release", as: String.self) { _ in
                throw EffectDidNotHappen("smtp refused the connection; nothing sent")
            }
        }
        #expect(released?.code == .released)
        #expect((released?.underlyingError as? EffectDidNotHappen)?.reason == "smtp refused the connection; nothing sent")
        #expect(released?.entry?.status == .absent)
        var entry = try #require(try await ledger.entry("k-release"))
        #expect(entry.status == .absent)
        #expect(entry.attempt == 1)
        #expect(try await ledger.pendingEntries().isEmpty)
        let records = try harness.keyRecords("k-release")
        #expect(records.map(\.kind) == [.intent, .release])
        if case .release(let release) = records.last {
            #expect(release.attempt == 1)
            #expect(release.reason == "smtp refused the connection; nothing sent")
            #expect(release.timeMilliseconds == 1_000)
        }
        // Durable: the attempt count survives a restart.
        ledger = try harness.reopen(ledger)
        entry = try #require(try await ledger.entry("k-release"))
        #expect(entry.status == .absent)
        #expect(entry.attempt == 1)
        // Release again, then run: attempts keep counting.
        await expectReleased {
            try await ledger.once("k-release", as: String.self) { context in
                #expect(context.attempt == 2)
                throw EffectDidNotHappen("still down")
            }
        }
        let outcome = try await ledger.once("k-release", as: String.self) { context in
            #expect(context.attempt == 3)
            #expect(context.token == EffectToken.derive(key: "k-release", generation: 0, scope: context.tokenScope))
            return "sent"
        }
        #expect(outcome.wasPerformed)
        #expect(outcome.entry.attempt == 3)
        #expect(try harness.keyRecords("k-release").map(\.kind) == [.intent, .release, .intent, .release, .intent, .completion])
    }

    /// A release reason longer than the record allows is cut at a character boundary, never
    /// replaced: the audit trail keeps what the effect said.
    @Test(arguments: BackendKind.allCases)
    func longReleaseReasonIsTruncatedNotLost(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        // "x" then two-byte characters: the byte limit falls inside a character.
        let reason = "x" + String(repeating: "\u{E9}", count: FormatLimits.reasonBytesMax)
        await expectReleased {
            try await ledger.once("k", as: String.self) { _ in throw EffectDidNotHappen(reason) }
        }
        #expect(try await ledger.entry("k")?.status == .absent)
        let records = try harness.keyRecords("k")
        #expect(records.map(\.kind) == [.intent, .release])
        if case .release(let release) = records.last {
            #expect(release.reason.utf8.count <= FormatLimits.reasonBytesMax)
            #expect(release.reason.utf8.count >= FormatLimits.reasonBytesMax - 1)
            let isPrefix = reason.hasPrefix(release.reason)
            #expect(isPrefix, "the recorded reason (\(release.reason.prefix(20))…) must be the start of the given one")
        }
    }

    @Test(arguments: BackendKind.allCases)
    func otherEffectErrorLeavesTheIntentUnresolved(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        let error = await ledgerError {
            try await ledger.once("k-failed", as: String.self) { _ in throw TestFailure("timeout after sending") }
        }
        #expect(error?.code == .effectFailed)
        #expect((error?.underlyingError as? TestFailure)?.description == "timeout after sending")
        #expect(error?.entry?.status == .pendingUnknown)
        #expect(try harness.keyRecords("k-failed").map(\.kind) == [.intent])
        ledger = try harness.reopen(ledger)
        #expect(try await ledger.entry("k-failed")?.status == .pendingUnknown)
    }

    // MARK: Scopes

    @Test(arguments: BackendKind.allCases)
    func whileInFlightDuplicateWaitsThenANewRunIsAllowed(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let started = Gate()
        let finish = Gate()
        let first = Task {
            try await ledger.once("k-live", as: String.self, scope: .whileInFlight) { context in
                started.open()
                await finish.wait()
                return "first:\(context.token)"
            }
        }
        await started.wait()
        let duplicateRuns = Counter()
        let duplicate = Task {
            try await ledger.once("k-live", as: String.self, scope: .whileInFlight) { _ in
                duplicateRuns.increment()
                return "duplicate"
            }
        }
        try await waitUntil("the duplicate waits on the running call") { ledger.waiterCount("k-live") == 1 }
        finish.open()
        let firstOutcome = try await first.value
        let duplicateOutcome = try await duplicate.value
        #expect(firstOutcome.wasPerformed)
        #expect(!duplicateOutcome.wasPerformed)
        #expect(duplicateOutcome.receipt == firstOutcome.receipt)
        #expect(duplicateRuns.count == 0)

        // Finished: whileInFlight no longer blocks. The re-run is a new generation: new token.
        let firstToken = EffectToken.derive(key: "k-live", generation: 0, scope: ledger.tokenScope)
        let again = try await ledger.once("k-live", as: String.self, scope: .whileInFlight) { context in
            #expect(context.attempt == 2)
            #expect(context.generation == 1)
            #expect(context.token != firstToken)
            #expect(context.token == EffectToken.derive(key: "k-live", generation: 1, scope: ledger.tokenScope))
            return "second"
        }
        #expect(again.wasPerformed)
        // A forever caller still sees the latest completion.
        let forever = try await ledger.once("k-live", as: String.self) { _ in "x" }
        #expect(!forever.wasPerformed)
        #expect(forever.receipt == "second")
    }

    @Test(arguments: BackendKind.allCases)
    func windowScopeUsesTheInjectedClock(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        let window = DeduplicationScope.window(milliseconds: 500)
        harness.clock.set(10_000)
        let first = try await ledger.once("k-window", as: String.self, scope: window) { _ in "r1" }
        #expect(first.wasPerformed)
        harness.clock.set(10_499)
        let inside = try await ledger.once("k-window", as: String.self, scope: window) { _ in "r-inside" }
        #expect(!inside.wasPerformed)
        #expect(inside.receipt == "r1")
        #expect(inside.entry.timeMilliseconds == 10_000)
        harness.clock.set(10_500)
        let after = try await ledger.once("k-window", as: String.self, scope: window) { context in
            #expect(context.attempt == 2)
            #expect(context.generation == 1)
            #expect(context.token != EffectToken.derive(key: "k-window", generation: 0, scope: context.tokenScope))
            return "r2"
        }
        #expect(after.wasPerformed, "a done entry as old as the window no longer blocks")
        #expect(after.entry.timeMilliseconds == 10_500)
        harness.clock.set(10_900)
        #expect(try await !ledger.once("k-window", as: String.self, scope: window) { _ in "r3" }.wasPerformed)
        // The same done entry blocks forever under the default scope, however late.
        harness.clock.set(1 << 40)
        #expect(try await !ledger.once("k-window", as: String.self) { _ in "r4" }.wasPerformed)
        // A huge window never expires (no overflow of completion time + window).
        #expect(try await !ledger.once("k-window", as: String.self, scope: .window(milliseconds: .max)) { _ in "r5" }.wasPerformed)
        // The window is measured from the stored completion time, also after a restart.
        harness.clock.set(11_000)
        ledger = try harness.reopen(ledger)
        #expect(try await ledger.once("k-window", as: String.self, scope: window) { _ in "r6" }.wasPerformed)
    }

    /// `.performed` hands back the entry the ledger now stores (`once` builds it rather
    /// than looking it up): a fresh key with params, a re-run after its window (attempt 2,
    /// generation 1), and a retry of a pending key (attempt 2), with the clock moving
    /// during each effect so the completion's time is the one that counts.
    @Test(arguments: BackendKind.allCases)
    func performedCarriesTheStoredEntry(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        struct Params: Encodable { var amount: Int }
        harness.clock.set(20_000)
        let key = try IdempotencyKey("k-entry", params: Params(amount: 7))
        let window = DeduplicationScope.window(milliseconds: 100)
        let first = try await ledger.once(key, as: String.self, scope: window) { _ in
            harness.clock.advance(3)
            return "r1"
        }
        #expect(first.wasPerformed)
        #expect(try await first.entry == ledger.entry("k-entry"))
        #expect(first.entry.timeMilliseconds == 20_003)
        #expect(first.entry.fingerprint == key.fingerprint)
        harness.clock.set(30_000)
        let again = try await ledger.once(key, as: String.self, scope: window) { _ in
            harness.clock.advance(5)
            return "r2"
        }
        #expect(again.wasPerformed)
        #expect(try await again.entry == ledger.entry("k-entry"))
        #expect(again.entry.attempt == 2 && again.entry.generation == 1 && again.entry.timeMilliseconds == 30_005)

        _ = await ledgerError { try await ledger.once("k-pending", as: String.self) { _ in throw TestFailure() } }
        let retried = try await ledger.once("k-pending", as: String.self, whenPending: .retry) { _ in
            harness.clock.advance(2)
            return "r3"
        }
        #expect(retried.wasPerformed)
        #expect(try await retried.entry == ledger.entry("k-pending"))
        #expect(retried.entry.attempt == 2)
    }

    // MARK: Fingerprints

    @Test(arguments: BackendKind.allCases)
    func sameKeyWithDifferentParamsThrowsCarryingTheStoredEntry(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        let original = try IdempotencyKey("order-7", params: ["amount": 100])
        let changed = try IdempotencyKey("order-7", params: ["amount": 200])
        #expect(original.fingerprint != changed.fingerprint)
        _ = try await ledger.once(original, as: String.self) { _ in "charged-100" }
        let intentRecords = try harness.keyRecords("order-7")
        if case .intent(let intent) = intentRecords.first {
            #expect(intent.fingerprint == original.fingerprint, "the fingerprint is stored with the intent")
        }
        let written = try harness.keyedRecordCount()
        let runs = Counter()
        for _ in 0..<2 {
            let error = await ledgerError {
                try await ledger.once(changed, as: String.self) { _ in runs.increment(); return "charged-200" }
            }
            #expect(error?.code == .fingerprintMismatch)
            #expect(error?.key == "order-7")
            let stored = try #require(error?.entry)
            #expect(stored.status == .done)
            #expect(stored.fingerprint == original.fingerprint)
            #expect(stored.receipt == json("charged-100"))
            ledger = try harness.reopen(ledger)
        }
        #expect(runs.count == 0)
        #expect(try harness.keyedRecordCount() == written)
        #expect(try await !ledger.once(original, as: String.self) { _ in "again" }.wasPerformed)

        // Derived keys: the same (name, params) is the same key.
        let derivedA = try IdempotencyKey(name: "charge", params: ["order": 8])
        let derivedB = try IdempotencyKey(name: "charge", params: ["order": 8])
        #expect(try await ledger.once(derivedA, as: String.self) { _ in "r" }.wasPerformed)
        #expect(try await !ledger.once(derivedB, as: String.self) { _ in "r" }.wasPerformed)

        // A pending entry is guarded the same way, before any policy applies.
        _ = await ledgerError { try await ledger.once(try IdempotencyKey("order-9", params: 1), as: String.self) { _ in throw TestFailure() } }
        let pendingMismatch = await ledgerError {
            try await ledger.once(try IdempotencyKey("order-9", params: 2), as: String.self, whenPending: .retry) { _ in
                runs.increment()
                return "x"
            }
        }
        #expect(pendingMismatch?.code == .fingerprintMismatch)
        #expect(pendingMismatch?.entry?.status == .pendingUnknown)
        #expect(runs.count == 0)
    }

    @Test(arguments: BackendKind.allCases)
    func differentParamsWhileRunningThrowsMismatch(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let started = Gate()
        let finish = Gate()
        let running = Task {
            try await ledger.once(try IdempotencyKey("order-1", params: "a"), as: String.self) { _ in
                started.open()
                await finish.wait()
                return "a"
            }
        }
        await started.wait()
        let error = await ledgerError {
            try await ledger.once(try IdempotencyKey("order-1", params: "b"), as: String.self) { _ in "b" }
        }
        #expect(error?.code == .fingerprintMismatch)
        finish.open()
        #expect(try await running.value.wasPerformed)
    }

    // MARK: Operator: pending list, resolve, forget

    @Test(arguments: BackendKind.allCases)
    func pendingEntriesAndResolveWithReason(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        harness.clock.set(2_000)
        _ = try await ledger.once("k-done", as: String.self) { _ in "done" }
        for key in ["p-happened", "p-not-happened"] {
            _ = await ledgerError { try await ledger.once(IdempotencyKey(key), as: String.self) { _ in throw TestFailure() } }
        }
        let pending = try await ledger.pendingEntries()
        #expect(pending.map(\.key) == ["p-happened", "p-not-happened"])
        for entry in pending {
            #expect(entry.status == .pendingUnknown)
            #expect(entry.attempt == 1)
            #expect(entry.timeMilliseconds == 2_000)
            #expect(entry.token == EffectToken.derive(key: entry.key, generation: 0, scope: ledger.tokenScope))
        }
        #expect(try await ledger.entries(status: .pendingUnknown) == pending)
        #expect(try await ledger.entries(status: .done).map(\.key) == ["k-done"])

        harness.clock.set(3_000)
        try await ledger.resolvePending("p-happened", as: .done(receipt: json("from-dashboard")),
                                        reason: "confirmed in the provider dashboard", actor: "alice")
        try await ledger.resolvePending("p-not-happened", as: .absent, reason: "provider has no such charge", actor: "bob")
        #expect(try await ledger.pendingEntries().isEmpty)
        #expect(try await ledger.entry("p-happened")?.status == .done)
        #expect(try await ledger.entry("p-happened")?.timeMilliseconds == 3_000)
        #expect(try await ledger.entry("p-not-happened")?.status == .absent)
        #expect(try await ledger.entry("p-not-happened")?.attempt == 1)

        let happened = try harness.keyRecords("p-happened")
        #expect(happened.map(\.kind) == [.intent, .resolve])
        if case .resolve(let resolve) = happened.last {
            #expect(resolve.outcome == .done)
            #expect(resolve.receipt == json("from-dashboard"))
            #expect(resolve.actor == "alice")
            #expect(resolve.reason == "confirmed in the provider dashboard")
            #expect(resolve.timeMilliseconds == 3_000)
            #expect(resolve.attempt == 1)
        }
        let notHappened = try harness.keyRecords("p-not-happened")
        #expect(notHappened.map(\.kind) == [.intent, .resolve])
        if case .resolve(let resolve) = notHappened.last {
            #expect(resolve.outcome == .absent)
            #expect(resolve.actor == "bob")
            #expect(resolve.reason == "provider has no such charge")
        }

        ledger = try harness.reopen(ledger)
        let done = try await ledger.once("p-happened", as: String.self) { _ in "ran" }
        #expect(!done.wasPerformed)
        #expect(done.receipt == "from-dashboard")
        let rerun = try await ledger.once("p-not-happened", as: String.self) { context in
            #expect(context.attempt == 2)
            #expect(context.token == EffectToken.derive(key: "p-not-happened", generation: 0, scope: context.tokenScope))
            return "ran"
        }
        #expect(rerun.wasPerformed)
    }

    @Test(arguments: BackendKind.allCases)
    func resolveNeedsAReason(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        _ = await ledgerError { try await ledger.once("p", as: String.self) { _ in throw TestFailure() } }
        let written = try harness.keyedRecordCount()
        let empty = await ledgerError { try await ledger.resolvePending("p", as: .absent, reason: "") }
        #expect(empty?.code == .invalidArgument)
        let tooLong = await ledgerError {
            try await ledger.resolvePending("p", as: .absent, reason: String(repeating: "r", count: FormatLimits.reasonBytesMax + 1))
        }
        #expect(tooLong?.code == .limitExceeded)
        #expect(try await ledger.entry("p")?.status == .pendingUnknown)
        #expect(try harness.keyedRecordCount() == written)
        #expect(!ledger.isRunning("p"))
    }

    @Test(arguments: BackendKind.allCases)
    func forgetNeedsAReasonIsRecordedAndTheRerunGetsANewToken(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        harness.clock.set(1_000)
        let first = try await ledger.once("k-forget", as: String.self) { context in "first:\(context.token)" }
        let written = try harness.keyedRecordCount()

        let noReason = await ledgerError { try await ledger.forgetDoneEntryAllowingRerun("k-forget", reason: "") }
        #expect(noReason?.code == .invalidArgument)
        let tooLong = await ledgerError {
            try await ledger.forgetDoneEntryAllowingRerun("k-forget", reason: String(repeating: "r", count: FormatLimits.reasonBytesMax + 1))
        }
        #expect(tooLong?.code == .limitExceeded)
        #expect(try await ledger.entry("k-forget")?.status == .done)
        #expect(try harness.keyedRecordCount() == written, "a refused forget writes nothing")

        harness.clock.set(2_000)
        try await ledger.forgetDoneEntryAllowingRerun("k-forget", reason: "customer asked for a resend", actor: "carol")
        let entry = try #require(try await ledger.entry("k-forget"))
        #expect(entry.status == .absent)
        #expect(entry.attempt == 1)
        #expect(entry.generation == 1)
        let records = try harness.keyRecords("k-forget")
        #expect(records.map(\.kind) == [.intent, .completion, .forget])
        if case .forget(let forget) = records.last {
            #expect(forget.reason == "customer asked for a resend")
            #expect(forget.actor == "carol")
            #expect(forget.timeMilliseconds == 2_000)
        }

        ledger = try harness.reopen(ledger)
        #expect(try await ledger.entry("k-forget")?.status == .absent)
        let rerun = try await ledger.once("k-forget", as: String.self) { context in
            #expect(context.attempt == 2)
            #expect(context.generation == 1)
            #expect(context.token == EffectToken.derive(key: "k-forget", generation: 1, scope: context.tokenScope))
            return "second:\(context.token)"
        }
        #expect(rerun.wasPerformed)
        #expect(rerun.receipt != first.receipt, "a forgotten key's rerun gets a new token")
    }

    @Test(arguments: BackendKind.allCases)
    func operatorCallsInTheWrongStateThrowAndWriteNothing(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        _ = try await ledger.once("done", as: String.self) { _ in "r" }
        _ = await ledgerError { try await ledger.once("pending", as: String.self) { _ in throw TestFailure() } }
        await expectReleased {
            try await ledger.once("released", as: String.self) { _ in throw EffectDidNotHappen("no") }
        }
        let written = try harness.keyedRecordCount()
        for key in ["done", "released", "never-seen"] {
            let error = await ledgerError { try await ledger.resolvePending(key, as: .absent, reason: "why") }
            #expect(error?.code == .wrongState, "resolve \(key)")
            #expect(try await error?.entry?.status == ledger.entry(key)?.status)
        }
        for key in ["pending", "released", "never-seen"] {
            let error = await ledgerError { try await ledger.forgetDoneEntryAllowingRerun(key, reason: "why") }
            #expect(error?.code == .wrongState, "forget \(key)")
        }
        // A key running now can be neither resolved nor forgotten.
        let started = Gate()
        let finish = Gate()
        let running = Task {
            try await ledger.once("pending", as: String.self, whenPending: .retry) { _ in
                started.open()
                await finish.wait()
                return "r"
            }
        }
        await started.wait()
        let resolveRunning = await ledgerError { try await ledger.resolvePending("pending", as: .absent, reason: "why") }
        #expect(resolveRunning?.code == .wrongState)
        finish.open()
        _ = try await running.value
        #expect(try harness.keyedRecordCount() == written + 2, "only the retry's intent and completion")
        #expect(try await ledger.entry("pending")?.status == .done)
    }

    /// Every release, resolution and forget is a record in the log, in order, with who/why/when.
    @Test(arguments: BackendKind.allCases)
    func theLogIsACompleteAuditTrail(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        harness.clock.set(100)
        await expectReleased {
            try await ledger.once("audit", as: String.self) { _ in throw EffectDidNotHappen("validation failed locally") }
        }
        harness.clock.set(200)
        _ = await ledgerError { try await ledger.once("audit", as: String.self) { _ in throw TestFailure() } }
        ledger = try harness.reopen(ledger)
        harness.clock.set(300)
        try await ledger.resolvePending("audit", as: .absent, reason: "not in the provider log", actor: "alice")
        harness.clock.set(400)
        _ = try await ledger.once("audit", as: String.self) { _ in "r3" }
        harness.clock.set(500)
        try await ledger.forgetDoneEntryAllowingRerun("audit", reason: "resend requested", actor: "bob")
        harness.clock.set(600)
        _ = try await ledger.once("audit", as: String.self) { _ in "r4" }

        let records = try harness.keyRecords("audit")
        #expect(records.map(\.kind) == [.intent, .release, .intent, .resolve, .intent, .completion, .forget, .intent, .completion])
        var summary: [String] = []
        for record in records {
            switch record {
            case .intent(let b): summary.append("intent a\(b.attempt) g\(b.generation) t\(b.timeMilliseconds)")
            case .completion(let b): summary.append("completion a\(b.attempt) t\(b.timeMilliseconds)")
            case .release(let b): summary.append("release a\(b.attempt) t\(b.timeMilliseconds) \(b.reason)")
            case .resolve(let b): summary.append("resolve \(b.outcome) a\(b.attempt) t\(b.timeMilliseconds) \(b.actor): \(b.reason)")
            case .forget(let b): summary.append("forget t\(b.timeMilliseconds) \(b.actor): \(b.reason)")
            default: summary.append("\(record.kind)")
            }
        }
        #expect(summary == [
            "intent a1 g0 t100",
            "release a1 t100 validation failed locally",
            "intent a2 g0 t200",
            "resolve absent a2 t300 alice: not in the provider log",
            "intent a3 g0 t400",
            "completion a3 t400",
            "forget t500 bob: resend requested",
            "intent a4 g1 t600",
            "completion a4 t600",
        ])
        ledger = try harness.reopen(ledger)
        let entry = try #require(try await ledger.entry("audit"))
        #expect(entry.status == .done)
        #expect(entry.attempt == 4)
        #expect(entry.generation == 1)
    }

    // MARK: Bad input

    @Test(arguments: BackendKind.allCases)
    func badKeysThrowTypedErrorsAndWriteNothing(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let runs = Counter()
        let empty = await ledgerError { try await ledger.once("", as: String.self) { _ in runs.increment(); return "x" } }
        #expect(empty?.code == .invalidArgument)
        let long = IdempotencyKey(String(repeating: "k", count: FormatLimits.keyBytesMax + 1))
        let tooLong = await ledgerError { try await ledger.once(long, as: String.self) { _ in runs.increment(); return "x" } }
        #expect(tooLong?.code == .limitExceeded)
        #expect(tooLong?.limit == "keyBytesMax")
        let bytesError = await ledgerError { try IdempotencyKey(bytes: [0x6b, 0xff, 0xfe]) }
        #expect(bytesError?.code == .invalidArgument)
        #expect(runs.count == 0)
        #expect(try await ledger.entryCount() == 0)
        #expect(try harness.keyedRecordCount() == 0, "nothing written")
        // Exactly at the limit is fine.
        let atLimit = IdempotencyKey(String(repeating: "k", count: FormatLimits.keyBytesMax))
        #expect(try await ledger.once(atLimit, as: String.self) { _ in "ok" }.wasPerformed)
    }

    @Test(arguments: BackendKind.allCases)
    func oversizedReceiptsThrowLimitExceeded(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        // From the effect: the effect ran, so it is recorded as done, without its receipt
        // (an empty one), and the caller is told so.
        let raw = await ledgerError {
            try await ledger.onceBytes("big-bytes") { _ in [UInt8](repeating: 7, count: FormatLimits.receiptBytesMax + 1) }
        }
        #expect(raw?.code == .limitExceeded)
        #expect(raw?.limit == "receiptBytesMax")
        #expect(raw?.key == "big-bytes")
        #expect(raw?.entry?.status == .done)
        #expect(try await ledger.entry("big-bytes")?.status == .done)
        #expect(try await ledger.entry("big-bytes")?.receipt == [])
        #expect(try harness.keyRecords("big-bytes").map(\.kind) == [.intent, .completion])
        // A typed receipt whose JSON is one byte too many (the two quotes count).
        let typed = await ledgerError {
            try await ledger.once("big-string", as: String.self) { _ in String(repeating: "x", count: FormatLimits.receiptBytesMax - 1) }
        }
        #expect(typed?.code == .limitExceeded)
        #expect(try harness.keyRecords("big-string").map(\.kind) == [.intent, .completion])
        // Exactly at the limit is stored and read back intact, also after a restart.
        let maximal = (0..<FormatLimits.receiptBytesMax).map { UInt8($0 % 251) }
        #expect(try await ledger.onceBytes("max-bytes") { _ in maximal }.wasPerformed)
        ledger = try harness.reopen(ledger)
        #expect(try await ledger.onceBytes("max-bytes") { _ in [] }.receipt == maximal)

        // From an operator or a reconcile closure: refused before anything is written.
        ledger = try await makePending(harness, ledger, "big-pending", .effectThrew)
        let written = try harness.keyedRecordCount()
        let resolveError = await ledgerError {
            try await ledger.resolvePending("big-pending", as: .done(receipt: [UInt8](repeating: 1, count: FormatLimits.receiptBytesMax + 1)),
                                           reason: "found it")
        }
        #expect(resolveError?.code == .limitExceeded)
        let reconcileError = await ledgerError {
            try await ledger.onceBytes("big-pending", whenPending: .reconcile { _ in
                .happened([UInt8](repeating: 1, count: FormatLimits.receiptBytesMax + 1))
            }) { _ in [] }
        }
        #expect(reconcileError?.code == .limitExceeded)
        #expect(try await ledger.entry("big-pending")?.status == .pendingUnknown)
        #expect(try harness.keyedRecordCount() == written)
        #expect(!ledger.isRunning("big-pending"))
    }

    @Test(arguments: BackendKind.allCases)
    func receiptThatDoesNotDecodeAsTheAskedTypeThrows(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        _ = try await ledger.once("k", as: String.self) { _ in "a string" }
        let written = try harness.keyedRecordCount()
        let runs = Counter()
        let error = await ledgerError { try await ledger.once("k", as: Int.self) { _ in runs.increment(); return 1 } }
        #expect(error?.code == .receiptDecodingFailed)
        #expect(error?.key == "k")
        #expect(error?.entry?.receipt == json("a string"))
        #expect(error?.entry?.status == .done)
        #expect(runs.count == 0)
        #expect(try harness.keyedRecordCount() == written)
        // The raw bytes are always available.
        #expect(try await ledger.once("k", as: [UInt8].self) { _ in [] }.receipt == json("a string"))
        // An operator's receipt that is not JSON at all.
        _ = await ledgerError { try await ledger.once("p", as: String.self) { _ in throw TestFailure() } }
        try await ledger.resolvePending("p", as: .done(receipt: [0xff, 0x00]), reason: "binary receipt")
        let binary = await ledgerError { try await ledger.once("p", as: String.self) { _ in "x" } }
        #expect(binary?.code == .receiptDecodingFailed)
    }

    // MARK: Compaction and reopening

    /// A closed ledger writes nothing more — also when its (in-memory) backend has been
    /// opened again by another `Ledger`, as a restart does.
    @Test(arguments: BackendKind.allCases)
    func closedLedgerRefusesToWrite(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let old = try harness.open()
        _ = try await old.once("done", as: String.self) { _ in "r" }
        let current = try harness.reopen(old)
        defer { try? current.close() }
        let written = try harness.keyedRecordCount()
        let runs = Counter()
        let error = await ledgerError { try await old.once("new", as: String.self) { _ in runs.increment(); return "x" } }
        #expect(error?.code == .closed)
        #expect(runs.count == 0)
        let forget = await ledgerError { try await old.forgetDoneEntryAllowingRerun("done", reason: "stale handle") }
        #expect(forget?.code == .closed)
        #expect(try harness.keyedRecordCount() == written)
        #expect(try await current.entry("new") == nil)
        #expect(try await current.entry("done")?.status == .done)
    }

    @Test(arguments: BackendKind.allCases)
    func compactionThenReopenKeepsEveryKeysState(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        let params = try IdempotencyKey("c-params", params: ["amount": 5])
        harness.clock.set(1_000)
        _ = try await ledger.once("c-done", as: String.self) { _ in "done" }
        _ = try await ledger.once(params, as: String.self) { _ in "with-params" }
        _ = await ledgerError { try await ledger.once("c-pending", as: String.self) { _ in throw TestFailure() } }
        await expectReleased {
            try await ledger.once("c-released", as: String.self) { _ in throw EffectDidNotHappen("no") }
        }
        _ = try await ledger.once("c-forgotten", as: String.self) { _ in "old" }
        harness.clock.set(2_000)
        try await ledger.forgetDoneEntryAllowingRerun("c-forgotten", reason: "rerun")
        _ = await ledgerError { try await ledger.once("c-resolved", as: String.self) { _ in throw TestFailure() } }
        try await ledger.resolvePending("c-resolved", as: .done(receipt: json("manual")), reason: "seen downstream")
        _ = try await ledger.once("c-window", as: String.self, scope: .window(milliseconds: 50)) { _ in "w" }

        let all = try await ledger.entries()
        #expect(all.count == 7)
        // The released and the forgotten key are absent: compaction drops them and raises the
        // generation floor past them (retention, `Spec/FORMAT.md` §9.5; `OnceRetentionTests`).
        let before = all.filter { $0.status != .absent }
        #expect(before.count == 5)
        try await ledger.compact()
        #expect(try await ledger.entries() == before)
        if kind == .memory { #expect(harness.memory.recordCount == 0, "compaction replaced the records by a snapshot") }
        ledger = try harness.reopen(ledger)
        #expect(try await ledger.entries() == before, "snapshot + replay gives back every key's state")

        // And they behave as before.
        #expect(try await ledger.once("c-done", as: String.self) { _ in "x" }.receipt == "done")
        #expect(await ledgerError { try await ledger.once("c-pending", as: String.self) { _ in "x" } }?.code == .pendingUnknown)
        // Dropped keys start again at the floor (2: past the forgotten key's generation 1).
        let released = try await ledger.once("c-released", as: String.self) { context in
            #expect(context.attempt == 1 && context.generation == 2)
            return "x"
        }
        #expect(released.wasPerformed)
        let forgotten = try await ledger.once("c-forgotten", as: String.self) { context in
            #expect(context.token == EffectToken.derive(key: "c-forgotten", generation: 2, scope: context.tokenScope))
            return "new"
        }
        #expect(forgotten.wasPerformed)
        #expect(try await ledger.once("c-resolved", as: String.self) { _ in "x" }.receipt == "manual")
        let mismatch = await ledgerError {
            try await ledger.once(try IdempotencyKey("c-params", params: ["amount": 6]), as: String.self) { _ in "x" }
        }
        #expect(mismatch?.code == .fingerprintMismatch, "the fingerprint survives the snapshot")

        // Records after a snapshot are replayed on top of it; a second compaction keeps all.
        let after = try await ledger.entries()
        ledger = try harness.reopen(ledger)
        #expect(try await ledger.entries() == after)
        try await ledger.compact()
        ledger = try harness.reopen(ledger)
        #expect(try await ledger.entries() == after)
    }

    /// After a compaction both record logs announce the snapshot's item count before its
    /// first item (the ledger sizes its tables from it), and exactly that many follow.
    @Test(arguments: BackendKind.allCases)
    func loadAnnouncesTheSnapshotItemCount(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        func backend() -> any RecordLog {
            kind == .file ? FileRecordLog(directory: harness.directory, configuration: harness.configuration)
                : harness.memory
        }
        var ledger = Ledger(store: try LogStore(log: backend()))
        for index in 0..<5 { _ = try await ledger.once(IdempotencyKey("k\(index)"), as: String.self) { _ in "r" } }
        try await ledger.compact()
        _ = try await ledger.once("after", as: String.self) { _ in "r" }
        try ledger.close()

        var announced: [Int] = []
        var itemsBeforeAnnouncement = 0
        var items = 0
        var records = 0
        let loading = backend()
        try loading.load(
            itemCount: { announced.append($0); itemsBeforeAnnouncement = items },
            item: { _, _ in items += 1 },
            record: { _, _ in records += 1 })
        try loading.close()
        #expect(announced == [items])
        #expect(items >= 5)
        #expect(itemsBeforeAnnouncement == 0)
        #expect(records >= 2, "the intent and completion after the snapshot are records")

        // And the ledger sized from it has every key.
        ledger = Ledger(store: try LogStore(log: backend()))
        defer { try? ledger.close() }
        #expect(try await ledger.entryCount() == 6)
    }
}

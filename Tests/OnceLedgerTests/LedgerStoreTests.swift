// Proves that both stores keep the `LedgerStore` contract, driven directly through the protocol
// (`any LedgerStore`), each check run on a FileStore in a temp directory and on an InMemoryStore:
// claim / complete / release and their entries; `doneEntry` answering only what claim answers done; a stale claim's completion or release refused
// (fencing); two `Ledger`s on one store running an effect once (the second gets `.running`, waits
// and returns the first one's receipt); `waitForChange` waking on complete, on release and on
// cancellation, and returning at once for a key nobody holds; resolve with a wrong
// `expectedAttempt` refused; `entries` paging by `afterKey`/`limit` in key-byte order; forget and
// resolve of a live-claimed key refused; intents found at open pending-unknown, never live.
// Races are ordered with the store's waiter count and gates, never with sleeps or clocks.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import Testing

/// Opens stores of one kind on one place (a directory, or an in-memory record list that
/// survives closing a store, like a restart).
final class StoreHarness: Sendable {
    let kind: BackendKind
    let directory: String
    let memory = InMemoryRecordLog()

    init(_ kind: BackendKind, name: String = #function) {
        self.kind = kind
        let clean = name.filter { $0.isLetter || $0.isNumber }.prefix(40)
        directory = FileManager.default.temporaryDirectory.path + "/ol-store-\(clean)-\(UUID().uuidString.prefix(8))"
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func open() throws -> any LedgerStore {
        switch kind {
        case .file: try FileStore(directory: directory, configuration: LogConfiguration(segmentBytes: 128 << 10))
        case .memory: try InMemoryStore(log: memory)
        }
    }

    /// The claim rules under `store`, for its waiter count.
    static func core(_ store: any LedgerStore) -> LogStore? {
        (store as? InMemoryStore)?.store ?? (store as? FileStore)?.store
    }
}

func claimRequest(_ key: IdempotencyKey, scope: DeduplicationScope = .forever, whenPending: PendingTakeover = .report,
                  at time: UInt64 = 1_000) -> ClaimRequest {
    ClaimRequest(key: key, scope: scope, whenPending: whenPending, timeMilliseconds: time)
}

/// The claim `result` granted; records an issue (and throws) if it is anything else.
func granted(_ result: ClaimResult, sourceLocation: SourceLocation = #_sourceLocation) throws -> Claim {
    guard case .claimed(let claim) = result else {
        Issue.record("expected .claimed, got \(result)", sourceLocation: sourceLocation)
        throw TestFailure("not claimed")
    }
    return claim
}

@Suite struct LedgerStoreTests {
    @Test(arguments: BackendKind.allCases)
    func claimCompleteAndRelease(_ kind: BackendKind) async throws {
        let harness = StoreHarness(kind)
        let store = try harness.open()
        defer { try? store.close() }

        let first = try granted(try await store.claim(claimRequest("k", at: 1_000)))
        #expect((first.attempt, first.generation, first.timeMilliseconds) == (1, 0, 1_000))
        let intent = try #require(try await store.entry("k"))
        #expect(intent.status == .pendingUnknown && intent.attempt == 1)
        let done = try await store.complete(first, receipt: Array("r".utf8), timeMilliseconds: 2_000)
        #expect(done.status == .done && done.attempt == 1 && done.generation == 0 && done.receipt == Array("r".utf8))
        #expect(try await store.entry("k") == done, "complete returns the entry as stored")
        guard case .done(let stored) = try await store.claim(claimRequest("k", at: 3_000)) else {
            Issue.record("a done key claims as done")
            return
        }
        #expect(stored == done)

        let other = try granted(try await store.claim(claimRequest("j")))
        try await store.release(other, reason: "did not happen", timeMilliseconds: 1_500)
        let released = try #require(try await store.entry("j"))
        #expect(released.status == .absent && released.attempt == 1, "a release keeps the attempt count")
        let again = try granted(try await store.claim(claimRequest("j")))
        #expect((again.attempt, again.generation) == (2, 0), "the same generation, so the same token")
        try await store.abandon(again)
        #expect(try await store.entry("j")?.status == .pendingUnknown, "an abandoned claim leaves its intent")
        #expect(try await store.entryCount() == 2)
    }

    /// `doneEntry` is `claim`'s `.done` answer without a claim: the done entry with its
    /// receipt, and nil wherever `claim` would answer anything else (nothing claimed then).
    @Test(arguments: BackendKind.allCases)
    func doneEntryAnswersOnlyWhatClaimWouldAnswerDone(_ kind: BackendKind) async throws {
        let harness = StoreHarness(kind)
        let store = try harness.open()
        defer { try? store.close() }
        let key = try IdempotencyKey("k", params: "a")

        #expect(try await store.doneEntry(claimRequest(key)) == nil, "an unknown key")
        let claim = try granted(try await store.claim(claimRequest(key, at: 1_000)))
        #expect(try await store.doneEntry(claimRequest(key)) == nil, "a live claim")
        let done = try await store.complete(claim, receipt: Array("r".utf8), timeMilliseconds: 2_000)
        #expect(try await store.doneEntry(claimRequest(key, at: 3_000)) == done, "done, with its receipt")
        #expect(try await store.doneEntry(claimRequest(try IdempotencyKey("k", params: "b"))) == nil,
                "other params: claim answers a mismatch")
        #expect(try await store.doneEntry(claimRequest(key, scope: .whileInFlight)) == nil, "may run again")
        #expect(try await store.doneEntry(claimRequest(key, scope: .window(milliseconds: 500), at: 2_400)) == done,
                "inside its window")
        #expect(try await store.doneEntry(claimRequest(key, scope: .window(milliseconds: 500), at: 2_500)) == nil,
                "past its window")

        let pending = try granted(try await store.claim(claimRequest("p")))
        try await store.abandon(pending)
        #expect(try await store.doneEntry(claimRequest("p")) == nil, "pending-unknown")
        #expect(try await store.entryCount() == 2, "doneEntry claimed nothing")
        guard case .done(let claimed) = try await store.claim(claimRequest(key, at: 3_000)) else {
            Issue.record("claim answers done where doneEntry did")
            return
        }
        #expect(claimed == done)
    }

    @Test(arguments: BackendKind.allCases)
    func aStaleClaimIsFenced(_ kind: BackendKind) async throws {
        let harness = StoreHarness(kind)
        let store = try harness.open()
        defer { try? store.close() }

        // Released, then claimed again: the first claim can neither complete nor release.
        let stale = try granted(try await store.claim(claimRequest("k")))
        try await store.release(stale, reason: "not sent", timeMilliseconds: 1_001)
        let current = try granted(try await store.claim(claimRequest("k")))
        #expect(current.fence != stale.fence)
        let completeStale = await ledgerError { try await store.complete(stale, receipt: [1], timeMilliseconds: 1_002) }
        #expect(completeStale?.code == .wrongState)
        let releaseStale = await ledgerError { try await store.release(stale, reason: "late", timeMilliseconds: 1_002) }
        #expect(releaseStale?.code == .wrongState)
        #expect(try await store.entry("k")?.status == .pendingUnknown, "the refused calls wrote nothing")
        #expect(try await store.entry("k")?.attempt == 2)

        // The current claim completes once; a second completion of it is refused.
        _ = try await store.complete(current, receipt: [2], timeMilliseconds: 1_003)
        let twice = await ledgerError { try await store.complete(current, receipt: [3], timeMilliseconds: 1_004) }
        #expect(twice?.code == .wrongState)
        #expect(try await store.entry("k")?.receipt == [2])
    }

    /// A claim granted before a restart is not live afterwards: its intent is pending-unknown,
    /// a claim answers `.pendingUnknown` (not `.running`), and the old claim cannot complete.
    @Test(arguments: BackendKind.allCases)
    func intentsFoundAtOpenArePendingUnknownNeverLive(_ kind: BackendKind) async throws {
        let harness = StoreHarness(kind)
        var store = try harness.open()
        let before = try granted(try await store.claim(claimRequest("k")))
        try store.close()
        store = try harness.open()
        defer { try? store.close() }

        guard case .pendingUnknown(let entry) = try await store.claim(claimRequest("k")) else {
            Issue.record("an intent found at open must claim as pending-unknown")
            return
        }
        #expect(entry.attempt == 1)
        try await store.waitForChange(of: entry)   // returns at once: nobody holds the key
        let late = await ledgerError { try await store.complete(before, receipt: [], timeMilliseconds: 2_000) }
        #expect(late?.code == .wrongState)
        let retried = try granted(try await store.claim(claimRequest("k", whenPending: .retry)))
        #expect((retried.attempt, retried.generation) == (2, 0))
    }

    /// Two `Ledger`s on one store: the second caller of a running key gets `.running` from the
    /// store (not from its own table of running calls), waits, and returns the first one's receipt.
    @Test(arguments: BackendKind.allCases)
    func twoLedgersOnOneStoreRunTheEffectOnce(_ kind: BackendKind) async throws {
        let harness = StoreHarness(kind)
        let store = try harness.open()
        defer { try? store.close() }
        let first = Ledger(store: store)
        let second = Ledger(store: store)
        let runs = Counter()
        let started = Gate()
        let finish = Gate()
        let running = Task {
            try await first.once("shared", as: String.self) { _ in
                runs.increment()
                started.open()
                await finish.wait()
                return "from-first"
            }
        }
        await started.wait()
        let duplicate = Task {
            try await second.once("shared", as: String.self) { _ in
                runs.increment()
                return "from-second"
            }
        }
        let core = try #require(StoreHarness.core(store))
        try await waitUntil("the second ledger waits in the store") { core.waiterCount("shared") == 1 }
        finish.open()
        let performed = try await running.value
        let waited = try await duplicate.value
        #expect(performed.wasPerformed && performed.receipt == "from-first")
        #expect(!waited.wasPerformed && waited.receipt == "from-first")
        #expect(waited.entry == performed.entry)
        #expect(runs.count == 1)
    }

    @Test(arguments: BackendKind.allCases)
    func aSecondClaimOfALiveKeyIsRunningOrAMismatch(_ kind: BackendKind) async throws {
        let harness = StoreHarness(kind)
        let store = try harness.open()
        defer { try? store.close() }
        let claim = try granted(try await store.claim(claimRequest(try IdempotencyKey("k", params: "a"))))
        guard case .running(let entry) = try await store.claim(claimRequest(try IdempotencyKey("k", params: "a"))) else {
            Issue.record("a second claim of a live key must answer .running")
            return
        }
        #expect(entry.status == .pendingUnknown && entry.attempt == claim.attempt)
        guard case .fingerprintMismatch = try await store.claim(claimRequest(try IdempotencyKey("k", params: "b"))) else {
            Issue.record("a claim with other params must answer .fingerprintMismatch")
            return
        }
        // Even under `.retry` a live intent is not taken over.
        guard case .running = try await store.claim(claimRequest(try IdempotencyKey("k", params: "a"), whenPending: .retry))
        else {
            Issue.record("a live claim is not pending-unknown for .retry")
            return
        }
        _ = try await store.complete(claim, receipt: [], timeMilliseconds: 1_001)
    }

    @Test(arguments: BackendKind.allCases, [true, false])
    func waitForChangeWakesWhenTheClaimEnds(_ kind: BackendKind, completes: Bool) async throws {
        let harness = StoreHarness(kind)
        let store = try harness.open()
        defer { try? store.close() }
        let core = try #require(StoreHarness.core(store))
        let claim = try granted(try await store.claim(claimRequest("k")))
        guard case .running(let entry) = try await store.claim(claimRequest("k")) else {
            Issue.record("the key is live")
            return
        }
        let woke = Gate()
        let waiter = Task {
            try await store.waitForChange(of: entry)
            woke.open()
        }
        try await waitUntil("the waiter is suspended") { core.waiterCount("k") == 1 }
        #expect(!woke.isOpen)
        if completes {
            _ = try await store.complete(claim, receipt: [7], timeMilliseconds: 1_001)
        } else {
            try await store.release(claim, reason: "not sent", timeMilliseconds: 1_001)
        }
        try await waiter.value
        #expect(woke.isOpen)
        let after = try await store.claim(claimRequest("k"))
        switch (completes, after) {
        case (true, .done(let done)): #expect(done.receipt == [7])
        case (false, .claimed(let next)): #expect(next.attempt == 2)
        default: Issue.record("after the wake-up the key claims as \(after)")
        }
    }

    @Test(arguments: BackendKind.allCases)
    func aCancelledWaitForChangeThrowsAndLeavesTheClaim(_ kind: BackendKind) async throws {
        let harness = StoreHarness(kind)
        let store = try harness.open()
        defer { try? store.close() }
        let core = try #require(StoreHarness.core(store))
        let claim = try granted(try await store.claim(claimRequest("k")))
        let entry = try #require(try await store.entry("k"))
        let waiter = Task { try await store.waitForChange(of: entry) }
        try await waitUntil("the waiter is suspended") { core.waiterCount("k") == 1 }
        waiter.cancel()
        let result = await waiter.result
        guard case .failure(let error) = result, error is CancellationError else {
            Issue.record("a cancelled wait throws CancellationError, got \(result)")
            return
        }
        #expect(core.waiterCount("k") == 0)
        _ = try await store.complete(claim, receipt: [], timeMilliseconds: 1_001)
    }

    @Test(arguments: BackendKind.allCases)
    func resolveWithAWrongExpectedAttemptIsRefused(_ kind: BackendKind) async throws {
        let harness = StoreHarness(kind)
        let store = try harness.open()
        defer { try? store.close() }
        try await store.abandon(try granted(try await store.claim(claimRequest("k"))))
        try await store.abandon(try granted(try await store.claim(claimRequest("k", whenPending: .retry))))
        let pending = try #require(try await store.entry("k"))
        #expect(pending.status == .pendingUnknown && pending.attempt == 2)

        let stale = await ledgerError {
            try await store.resolve(ResolveRequest(key: "k", outcome: .done(receipt: [1]), expected: .pendingUnknown,
                                                   expectedAttempt: 1, actor: "test", reason: "seen attempt 1",
                                                   timeMilliseconds: 2_000))
        }
        #expect(stale?.code == .wrongState)
        #expect(try await store.entry("k") == pending, "a refused resolve writes nothing")
        let wrongState = await ledgerError {
            try await store.resolve(ResolveRequest(key: "k", outcome: .done(receipt: [1]), expected: .done,
                                                   actor: "test", reason: "correct it", timeMilliseconds: 2_000))
        }
        #expect(wrongState?.code == .wrongState)

        let resolved = try await store.resolve(ResolveRequest(
            key: "k", outcome: .done(receipt: [1]), expected: .pendingUnknown, expectedAttempt: 2, actor: "test",
            reason: "seen attempt 2", timeMilliseconds: 2_000))
        #expect(resolved.status == .done && resolved.attempt == 2 && resolved.receipt == [1])
    }

    @Test(arguments: BackendKind.allCases)
    func forgetAndResolveOfALiveKeyAreRefused(_ kind: BackendKind) async throws {
        let harness = StoreHarness(kind)
        let store = try harness.open()
        defer { try? store.close() }
        let first = try granted(try await store.claim(claimRequest("k", scope: .whileInFlight)))
        _ = try await store.complete(first, receipt: [1], timeMilliseconds: 1_001)
        // Done, and (under `.whileInFlight`) claimed again: the key is live (its new intent is
        // pending-unknown), so forgetting or correcting it now would race the running effect.
        let live = try granted(try await store.claim(claimRequest("k", scope: .whileInFlight)))
        #expect(live.generation == 1)
        let forget = await ledgerError {
            try await store.forget(ForgetRequest(key: "k", actor: "test", reason: "resend", timeMilliseconds: 1_002))
        }
        #expect(forget?.code == .wrongState)
        let correct = await ledgerError {
            try await store.resolve(ResolveRequest(key: "k", outcome: .done(receipt: [9]), expected: .done,
                                                   actor: "test", reason: "fix", timeMilliseconds: 1_002))
        }
        #expect(correct?.code == .wrongState)
        #expect(try await store.entry("k")?.status == .pendingUnknown, "the refused acts wrote nothing")
        #expect(try await store.entry("k")?.attempt == 2)

        // A pending-unknown key whose intent is live is not resolvable either.
        let pending = try granted(try await store.claim(claimRequest("p")))
        let resolve = await ledgerError {
            try await store.resolve(ResolveRequest(key: "p", outcome: .absent, expected: .pendingUnknown,
                                                   actor: "test", reason: "guess", timeMilliseconds: 1_002))
        }
        #expect(resolve?.code == .wrongState)

        _ = try await store.complete(live, receipt: [2], timeMilliseconds: 1_003)
        _ = try await store.complete(pending, receipt: [], timeMilliseconds: 1_003)
        try await store.forget(ForgetRequest(key: "k", actor: "test", reason: "resend", timeMilliseconds: 1_004))
        #expect(try await store.entry("k")?.status == .absent)
    }

    /// The live check itself, not the state check: while a new intent of a done key is on its
    /// way to the log (held at a gate), the stored entry is still done, yet forget and
    /// correct are refused because the key is claimed.
    @Test func forgetOfADoneKeyWhoseNewIntentIsBeingWrittenIsRefused() async throws {
        let memory = InMemoryRecordLog()
        let audit = AppendAudit()
        let store = try InMemoryStore(log: RecordingBackend(inner: memory, log: audit))
        defer { try? store.close() }
        let first = try granted(try await store.claim(claimRequest("k", scope: .whileInFlight)))
        _ = try await store.complete(first, receipt: [1], timeMilliseconds: 1_001)
        let hold = audit.holdNextAppend()
        let claiming = Task { try await store.claim(claimRequest("k", scope: .whileInFlight)) }
        await hold.entered.wait()
        #expect(try await store.entry("k")?.status == .done, "the new intent is not durable yet")
        let forget = await ledgerError {
            try await store.forget(ForgetRequest(key: "k", actor: "test", reason: "resend", timeMilliseconds: 1_002))
        }
        #expect(forget?.code == .wrongState)
        #expect(forget?.message.contains("running") == true, "\(forget?.message ?? "")")
        let correct = await ledgerError {
            try await store.resolve(ResolveRequest(key: "k", outcome: .done(receipt: [9]), expected: .done,
                                                   actor: "test", reason: "fix", timeMilliseconds: 1_002))
        }
        #expect(correct?.code == .wrongState)
        hold.release.open()
        let live = try granted(try await claiming.value)
        _ = try await store.complete(live, receipt: [2], timeMilliseconds: 1_003)
        let forgotten = audit.records.withLock { $0.filter { $0.kind == .forget }.count }
        #expect(forgotten == 0, "the refused forget wrote nothing")
    }

    @Test(arguments: BackendKind.allCases)
    func entriesArePagedInKeyByteOrder(_ kind: BackendKind) async throws {
        let harness = StoreHarness(kind)
        let store = try harness.open()
        defer { try? store.close() }
        // "é" (C3 A9) sorts after "z" (7A) by bytes; "B" (42) before "a" (61).
        let keys = ["z", "é", "a", "B", "ab", "aa"]
        for (index, key) in keys.enumerated() {
            let claim = try granted(try await store.claim(claimRequest(IdempotencyKey(key))))
            if index.isMultiple(of: 2) {
                _ = try await store.complete(claim, receipt: [], timeMilliseconds: 1_001)
            } else {
                try await store.abandon(claim)
            }
        }
        let sorted = ["B", "a", "aa", "ab", "z", "é"]
        #expect(try await store.entries(EntryQuery()).map(\.key) == sorted)
        var pages: [[String]] = []
        var after: String?
        while true {
            let page = try await store.entries(EntryQuery(afterKey: after, limit: 2)).map(\.key)
            if page.isEmpty { break }
            pages.append(page)
            after = page.last
        }
        #expect(pages == [["B", "a"], ["aa", "ab"], ["z", "é"]])
        #expect(try await store.entries(EntryQuery(afterKey: "a0", limit: 10)).map(\.key) == ["aa", "ab", "z", "é"],
                "afterKey need not be a stored key")
        #expect(try await store.entries(EntryQuery(status: .done)).map(\.key) == ["a", "ab", "z"])
        #expect(try await store.entries(EntryQuery(status: .pendingUnknown, afterKey: "aa", limit: 1)).map(\.key) == ["é"])
        #expect(try await store.entries(EntryQuery(limit: 0)).isEmpty)
    }
}

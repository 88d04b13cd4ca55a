// The `LedgerStore` contract (`ARCHITECTURE.md` §2): one set of checks, driven through the
// protocol (`any LedgerStore`), that every store runs — the file store and the in-memory store
// (`LedgerStoreTests`) and the PostgreSQL store (`PostgresStoreTests`). No test here: each test
// target calls these checks from its own `@Test`s with its own `StoreUnderTest`. Races are ordered
// with the store's waiter count and gates, never with sleeps or clocks.
import OnceLedger
import OnceLedgerFormat
import Testing

/// A store to run the contract on.
public struct StoreUnderTest: Sendable {
    /// Opens a store on the place under test. With `twoStoresAtOnce`, a second call while the
    /// first store is open opens another store on the same ledger (another process).
    public var open: @Sendable () async throws -> any LedgerStore
    /// Callers of `store` suspended in `waitForChange` on a key.
    public var waiterCount: @Sendable (_ store: any LedgerStore, _ key: String) -> Int
    /// Whether two stores may be open on one ledger at once (PostgreSQL: yes; a directory has
    /// one writer, so a second caller uses the same store).
    public var twoStoresAtOnce: Bool
    /// Whether `doneEntry` answers done entries (nil, always, is allowed: the default).
    public var answersDoneEntries: Bool

    public init(open: @escaping @Sendable () async throws -> any LedgerStore,
                waiterCount: @escaping @Sendable (_ store: any LedgerStore, _ key: String) -> Int,
                twoStoresAtOnce: Bool, answersDoneEntries: Bool) {
        self.open = open
        self.waiterCount = waiterCount
        self.twoStoresAtOnce = twoStoresAtOnce
        self.answersDoneEntries = answersDoneEntries
    }

    /// A second store on the ledger of `store`: another one if allowed, else `store` itself.
    func another(_ store: any LedgerStore) async throws -> any LedgerStore {
        twoStoresAtOnce ? try await open() : store
    }

    func close(_ store: any LedgerStore, _ other: any LedgerStore) {
        try? store.close()
        if twoStoresAtOnce { try? other.close() }
    }
}

public enum StoreContract {
    /// Claim, complete, release and abandon, and the entries they leave.
    public static func claimCompleteAndRelease(_ under: StoreUnderTest) async throws {
        let store = try await under.open()
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
        guard case .pendingUnknown = try await store.claim(claimRequest("j")) else {
            Issue.record("an abandoned claim's key is pending-unknown, not running")
            return
        }
        #expect(try await store.entryCount() == 2)
    }

    /// `doneEntry` is `claim`'s `.done` answer without a claim: the done entry with its
    /// receipt, and nil wherever `claim` would answer anything else (nothing claimed then).
    /// A store that does not answer done entries answers nil always.
    public static func doneEntryAnswersOnlyWhatClaimWouldAnswerDone(_ under: StoreUnderTest) async throws {
        let store = try await under.open()
        defer { try? store.close() }
        let key = try IdempotencyKey("k", params: "a")
        let answers = under.answersDoneEntries

        #expect(try await store.doneEntry(claimRequest(key)) == nil, "an unknown key")
        let claim = try granted(try await store.claim(claimRequest(key, at: 1_000)))
        #expect(try await store.doneEntry(claimRequest(key)) == nil, "a live claim")
        let done = try await store.complete(claim, receipt: Array("r".utf8), timeMilliseconds: 2_000)
        #expect(try await store.doneEntry(claimRequest(key, at: 3_000)) == (answers ? done : nil), "done, with its receipt")
        #expect(try await store.doneEntry(claimRequest(try IdempotencyKey("k", params: "b"))) == nil,
                "other params: claim answers a mismatch")
        #expect(try await store.doneEntry(claimRequest(key, scope: .whileInFlight)) == nil, "may run again")
        #expect(try await store.doneEntry(claimRequest(key, scope: .window(milliseconds: 500), at: 2_400))
                    == (answers ? done : nil), "inside its window")
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

    /// A claim released (or superseded) can neither complete nor release; a completion is
    /// accepted once.
    public static func aStaleClaimIsFenced(_ under: StoreUnderTest) async throws {
        let store = try await under.open()
        defer { try? store.close() }

        let stale = try granted(try await store.claim(claimRequest("k")))
        try await store.release(stale, reason: "not sent", timeMilliseconds: 1_001)
        let current = try granted(try await store.claim(claimRequest("k")))
        #expect(current.fence != stale.fence)
        let completeStale = await ledgerError { try await store.complete(stale, receipt: [1], timeMilliseconds: 1_002) }
        #expect(completeStale?.code == .wrongState)
        #expect(completeStale?.entry?.attempt == 2, "the error carries the key's current entry")
        let releaseStale = await ledgerError { try await store.release(stale, reason: "late", timeMilliseconds: 1_002) }
        #expect(releaseStale?.code == .wrongState)
        #expect(try await store.entry("k")?.status == .pendingUnknown, "the refused calls wrote nothing")
        #expect(try await store.entry("k")?.attempt == 2)

        _ = try await store.complete(current, receipt: [2], timeMilliseconds: 1_003)
        let twice = await ledgerError { try await store.complete(current, receipt: [3], timeMilliseconds: 1_004) }
        #expect(twice?.code == .wrongState)
        #expect(try await store.entry("k")?.receipt == [2])
    }

    public static func aSecondClaimOfALiveKeyIsRunningOrAMismatch(_ under: StoreUnderTest) async throws {
        let store = try await under.open()
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

    /// Two `Ledger`s (on two stores of one ledger where allowed): the second caller of a
    /// running key gets `.running` from the store, waits, and returns the first one's receipt.
    public static func twoLedgersRunTheEffectOnce(_ under: StoreUnderTest) async throws {
        let store = try await under.open()
        let otherStore = try await under.another(store)
        defer { under.close(store, otherStore) }
        let first = Ledger(store: store)
        let second = Ledger(store: otherStore)
        let runs = Counter()
        let started = Gate()
        let finish = Gate()
        let running = Task {
            try await first.once("shared", as: String.self) { context in
                runs.increment()
                started.open()
                await finish.wait()
                return "from-first \(context.token)"
            }
        }
        await started.wait()
        let duplicate = Task {
            try await second.once("shared", as: String.self) { _ in
                runs.increment()
                return "from-second"
            }
        }
        try await waitUntil("the second ledger waits in the store") { under.waiterCount(otherStore, "shared") == 1 }
        finish.open()
        let performed = try await running.value
        let waited = try await duplicate.value
        #expect(performed.wasPerformed && performed.receipt.hasPrefix("from-first"))
        #expect(!waited.wasPerformed && waited.receipt == performed.receipt)
        #expect(waited.entry == performed.entry)
        #expect(runs.count == 1)
        #expect(performed.receipt.hasSuffix(performed.entry.token), "the effect saw the entry's token")
    }

    /// A waiter (on another store where allowed) wakes when the claim completes or is released.
    public static func waitForChangeWakesWhenTheClaimEnds(_ under: StoreUnderTest, completes: Bool) async throws {
        let store = try await under.open()
        let other = try await under.another(store)
        defer { under.close(store, other) }
        let claim = try granted(try await store.claim(claimRequest("k")))
        guard case .running(let entry) = try await other.claim(claimRequest("k")) else {
            Issue.record("the key is live")
            return
        }
        let woke = Gate()
        let waiter = Task {
            try await other.waitForChange(of: entry)
            woke.open()
        }
        try await waitUntil("the waiter is suspended") { under.waiterCount(other, "k") == 1 }
        #expect(!woke.isOpen)
        if completes {
            _ = try await store.complete(claim, receipt: [7], timeMilliseconds: 1_001)
        } else {
            try await store.release(claim, reason: "not sent", timeMilliseconds: 1_001)
        }
        try await waiter.value
        #expect(woke.isOpen)
        let after = try await other.claim(claimRequest("k"))
        switch (completes, after) {
        case (true, .done(let done)): #expect(done.receipt == [7])
        case (false, .claimed(let next)): #expect(next.attempt == 2)
        default: Issue.record("after the wake-up the key claims as \(after)")
        }
    }

    public static func aCancelledWaitForChangeThrowsAndLeavesTheClaim(_ under: StoreUnderTest) async throws {
        let store = try await under.open()
        defer { try? store.close() }
        let claim = try granted(try await store.claim(claimRequest("k")))
        let entry = try #require(try await store.entry("k"))
        let waiter = Task { try await store.waitForChange(of: entry) }
        try await waitUntil("the waiter is suspended") { under.waiterCount(store, "k") == 1 }
        waiter.cancel()
        let result = await waiter.result
        guard case .failure(let error) = result, error is CancellationError else {
            Issue.record("a cancelled wait throws CancellationError, got \(result)")
            return
        }
        #expect(under.waiterCount(store, "k") == 0)
        _ = try await store.complete(claim, receipt: [], timeMilliseconds: 1_001)
    }

    public static func waitForChangeReturnsAtOnceForAKeyNobodyHolds(_ under: StoreUnderTest) async throws {
        let store = try await under.open()
        defer { try? store.close() }
        try await store.abandon(try granted(try await store.claim(claimRequest("k"))))
        let pending = try #require(try await store.entry("k"))
        try await store.waitForChange(of: pending)
        #expect(under.waiterCount(store, "k") == 0)
    }

    /// Resolve checks the expected state and attempt, corrects a done key, refuses a missing one.
    public static func resolveWithAWrongExpectedAttemptIsRefused(_ under: StoreUnderTest) async throws {
        let store = try await under.open()
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
        #expect(try await store.entry("k") == resolved)

        let corrected = try await store.resolve(ResolveRequest(
            key: "k", outcome: .done(receipt: [9]), expected: .done, actor: "test", reason: "fix", timeMilliseconds: 2_500))
        #expect(corrected.receipt == [9] && corrected.fingerprint == pending.fingerprint)
        let absent = await ledgerError {
            try await store.resolve(ResolveRequest(key: "missing", outcome: .absent, expected: .pendingUnknown,
                                                   actor: "test", reason: "no such key", timeMilliseconds: 2_000))
        }
        #expect(absent?.code == .wrongState)
    }

    /// A key dropped at compaction (here resolved absent) and claimed again starts at attempt 1
    /// in a newer generation (the floor's), so an answer about an entry read before the drop (a
    /// reconcile that took long) can carry the attempt of the newer claim: the store refuses it
    /// when the generation differs, and writes nothing.
    public static func resolveOfANewerGenerationWithTheSameAttemptIsRefused(_ under: StoreUnderTest) async throws {
        let store = try await under.open()
        defer { try? store.close() }
        try await store.abandon(try granted(try await store.claim(claimRequest("k"))))
        let read = try #require(try await store.entry("k"))
        // Meanwhile: it is resolved absent, dropped at compaction, claimed again and left pending.
        _ = try await store.resolve(ResolveRequest(key: "k", outcome: .absent, expected: .pendingUnknown,
                                                   actor: "test", reason: "settled", timeMilliseconds: 2_000))
        try await store.compact(nowMilliseconds: 2_100)
        try #require(try await store.entry("k") == nil, "the absent entry was dropped")
        try await store.abandon(try granted(try await store.claim(claimRequest("k"))))
        let newer = try #require(try await store.entry("k"))
        try #require(newer.status == .pendingUnknown && newer.attempt == read.attempt && newer.generation != read.generation,
                     "the newer claim has the attempt of the one read: \(newer) after \(read)")

        let stale = await ledgerError {
            try await store.resolve(ResolveRequest(key: "k", outcome: .absent, expected: .pendingUnknown,
                                                   expectedAttempt: read.attempt, expectedGeneration: read.generation,
                                                   actor: "reconcile", reason: "about the entry read before",
                                                   timeMilliseconds: 2_200))
        }
        #expect(stale?.code == .wrongState)
        #expect(stale?.message.contains("generation") == true, "\(String(describing: stale))")
        #expect(try await store.entry("k") == newer, "a refused resolve writes nothing")
        let resolved = try await store.resolve(ResolveRequest(
            key: "k", outcome: .done(receipt: [2]), expected: .pendingUnknown, expectedAttempt: newer.attempt,
            expectedGeneration: newer.generation, actor: "test", reason: "about the newer claim", timeMilliseconds: 2_300))
        #expect(resolved.status == .done && resolved.generation == newer.generation && resolved.receipt == [2])
    }

    /// Forget and resolve of a key a live claim holds are refused; once settled, forget moves
    /// the key to a new generation, so it runs again under a new token.
    public static func forgetAndResolveOfALiveKeyAreRefused(_ under: StoreUnderTest) async throws {
        let store = try await under.open()
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
        #expect(resolve?.message.contains("running") == true, "\(resolve?.message ?? "")")

        _ = try await store.complete(live, receipt: [2], timeMilliseconds: 1_003)
        _ = try await store.complete(pending, receipt: [], timeMilliseconds: 1_003)
        try await store.forget(ForgetRequest(key: "k", actor: "test", reason: "resend", timeMilliseconds: 1_004))
        let forgotten = try #require(try await store.entry("k"))
        #expect(forgotten.status == .absent && forgotten.generation == 2, "forget moves to the next generation")
        let rerun = try granted(try await store.claim(claimRequest("k")))
        #expect((rerun.attempt, rerun.generation) == (3, 2), "a forgotten key runs again with a new token")
        _ = try await store.complete(rerun, receipt: [], timeMilliseconds: 1_005)
    }

    /// `entries` pages by `afterKey`/`limit` in key-byte order, with a status filter.
    public static func entriesArePagedInKeyByteOrder(_ under: StoreUnderTest) async throws {
        let store = try await under.open()
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
        #expect(try await store.entries(EntryQuery()).map(\.key) == ["B", "a", "aa", "ab", "z", "é"])
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

    /// A `.window` key blocks until its window has passed on the ledger's clock, then runs
    /// again under a new token; a window past the end of time never expires.
    public static func windowScopesExpireOnTheLedgersClock(_ under: StoreUnderTest) async throws {
        let store = try await under.open()
        defer { try? store.close() }
        let first = try granted(try await store.claim(claimRequest("w", scope: .window(milliseconds: 100), at: 1_000)))
        _ = try await store.complete(first, receipt: [1], timeMilliseconds: 1_000)
        guard case .done = try await store.claim(claimRequest("w", scope: .window(milliseconds: 100), at: 1_099)) else {
            Issue.record("inside its window a done key claims as done")
            return
        }
        let second = try granted(try await store.claim(claimRequest("w", scope: .window(milliseconds: 100), at: 1_100)))
        #expect((second.attempt, second.generation) == (2, 1), "past its window a key runs again, with a new token")
        _ = try await store.complete(second, receipt: [2], timeMilliseconds: 1_100)
        guard case .done = try await store.claim(claimRequest("w", scope: .window(milliseconds: .max), at: .max >> 1)) else {
            Issue.record("a window reaching past the end of time never expires")
            return
        }
    }
}

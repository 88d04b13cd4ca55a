// Proves that `PostgresStore` keeps the `LedgerStore` contract the file store keeps
// (LedgerStoreTests), against a real server (the shared throw-away cluster, one schema per
// test): claim / complete / release and their entries; a stale claim's completion refused
// (fencing); two `Ledger`s, on one store and on two stores (two "processes"), running an
// effect once; `waitForChange` waking on complete, on release and on cancellation; resolve
// with a wrong `expectedAttempt` refused; forget and resolve of a live key refused; paging
// in key-byte order; tokens ledger-scoped by the schema's id; retention (compact drops what
// blocks nothing at its time, keeps pending, forever, live and unexpired entries, and a
// dropped key runs again at the raised generation floor, under a token never given before). Races are ordered with the
// store's waiter count and gates, never with sleeps or clocks.
import OnceLedger
import OnceLedgerFormat
@testable import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import Testing

@Suite(.enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct PostgresStoreTests {
    @Test func claimCompleteAndRelease() async throws {
        let store = try await PostgresHarness().open()
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
        #expect(store.liveClaimCount == 0, "settled claims are no longer renewed")
    }

    @Test func aStaleClaimIsFenced() async throws {
        let store = try await PostgresHarness().open()
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

    @Test func aSecondClaimOfALiveKeyIsRunningOrAMismatch() async throws {
        let store = try await PostgresHarness().open()
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
        guard case .running = try await store.claim(claimRequest(try IdempotencyKey("k", params: "a"), whenPending: .retry))
        else {
            Issue.record("a live claim is not pending-unknown for .retry")
            return
        }
        _ = try await store.complete(claim, receipt: [], timeMilliseconds: 1_001)
    }

    @Test(arguments: [true, false])
    func waitForChangeWakesWhenTheClaimEnds(completes: Bool) async throws {
        let harness = try PostgresHarness()
        let store = try await harness.open()
        let other = try await harness.open()
        defer { try? store.close(); try? other.close() }
        let claim = try granted(try await store.claim(claimRequest("k")))
        guard case .running(let entry) = try await other.claim(claimRequest("k")) else {
            Issue.record("the key is live for another store")
            return
        }
        let woke = Gate()
        let waiter = Task {
            try await other.waitForChange(of: entry)
            woke.open()
        }
        try await waitUntil("the waiter is registered") { other.waiterCount("k") == 1 }
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

    @Test func aCancelledWaitForChangeThrowsAndLeavesTheClaim() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let claim = try granted(try await store.claim(claimRequest("k")))
        let entry = try #require(try await store.entry("k"))
        let waiter = Task { try await store.waitForChange(of: entry) }
        try await waitUntil("the waiter is registered") { store.waiterCount("k") == 1 }
        waiter.cancel()
        let result = await waiter.result
        guard case .failure(let error) = result, error is CancellationError else {
            Issue.record("a cancelled wait throws CancellationError, got \(result)")
            return
        }
        #expect(store.waiterCount("k") == 0)
        _ = try await store.complete(claim, receipt: [], timeMilliseconds: 1_001)
    }

    @Test func waitForChangeReturnsAtOnceForAKeyNobodyHolds() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        try await store.abandon(try granted(try await store.claim(claimRequest("k"))))
        let pending = try #require(try await store.entry("k"))
        try await store.waitForChange(of: pending)
        #expect(store.waiterCount("k") == 0)
    }

    @Test func resolveWithAWrongExpectedAttemptIsRefused() async throws {
        let store = try await PostgresHarness().open()
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

    @Test func forgetAndResolveOfALiveKeyAreRefused() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let first = try granted(try await store.claim(claimRequest("k", scope: .whileInFlight)))
        _ = try await store.complete(first, receipt: [1], timeMilliseconds: 1_001)
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

    @Test func entriesArePagedInKeyByteOrder() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
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
        #expect(try await store.entries(EntryQuery(afterKey: "a0", limit: 10)).map(\.key) == ["aa", "ab", "z", "é"])
        #expect(try await store.entries(EntryQuery(status: .done)).map(\.key) == ["a", "ab", "z"])
        #expect(try await store.entries(EntryQuery(status: .pendingUnknown, afterKey: "aa", limit: 1)).map(\.key) == ["é"])
        #expect(try await store.entries(EntryQuery(limit: 0)).isEmpty)
    }

    @Test func windowScopesExpireOnTheLedgersClock() async throws {
        let store = try await PostgresHarness().open()
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

    /// Two stores on one schema are one ledger: the same ledger id, so the same tokens.
    @Test func storesOnOneSchemaShareTheLedgerIdAndTokens() async throws {
        let harness = try PostgresHarness()
        let first = try await harness.open()
        let second = try await harness.open()
        defer { try? first.close(); try? second.close() }
        #expect(first.tokenScope == second.tokenScope)
        #expect(first.tokenScope.isLedgerScoped)
        let other = try await PostgresHarness(name: "another").open()
        defer { try? other.close() }
        #expect(other.tokenScope != first.tokenScope, "another schema is another ledger")
        let claim = try granted(try await first.claim(claimRequest("k")))
        let entry = try #require(try await second.entry("k"))
        #expect(entry.token == EffectToken.derive(key: "k", generation: claim.generation, scope: first.tokenScope))
        _ = try await first.complete(claim, receipt: [], timeMilliseconds: 1_001)
    }

    /// Many concurrent claims of one store, duplicates among them, go out in shared
    /// statements and each gets its own key's answer.
    @Test func concurrentClaimsEachGetTheirOwnAnswer() async throws {
        let store = try await PostgresHarness().open(connections: 2)
        defer { try? store.close() }
        let count = 64
        let results = try await withThrowingTaskGroup(of: (Int, ClaimResult).self) { group in
            for index in 0..<count {
                group.addTask { (index, try await store.claim(claimRequest(IdempotencyKey("key-\(index % 48)")))) }
            }
            var results: [(Int, ClaimResult)] = []
            for try await result in group { results.append(result) }
            return results
        }
        var claimed: [String: Claim] = [:]
        var running = 0
        for (_, result) in results {
            switch result {
            case .claimed(let claim):
                #expect(claimed[claim.key.rawValue] == nil, "one claim per key")
                claimed[claim.key.rawValue] = claim
            case .running: running += 1
            default: Issue.record("unexpected \(result)")
            }
        }
        #expect(claimed.count == 48 && running == 16)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for claim in claimed.values {
                group.addTask { _ = try await store.complete(claim, receipt: Array(claim.key.rawValue.utf8), timeMilliseconds: 2_000) }
            }
            try await group.waitForAll()
        }
        for entry in try await store.entries(EntryQuery()) {
            #expect(entry.status == .done && entry.receipt == Array(entry.key.utf8))
        }
    }

    @Test func compactDropsWhatBlocksNothingAndTheFloorKeepsTokensNew() async throws {
        let harness = try PostgresHarness()
        let store = try await harness.open()
        defer { try? store.close() }
        var tokens: Set<String> = []
        func run(_ key: String, _ scope: DeduplicationScope, at time: UInt64, then settle: String) async throws -> Claim {
            let claim = try granted(try await store.claim(claimRequest(IdempotencyKey(key), scope: scope, at: time)))
            tokens.insert(EffectToken.derive(key: key, generation: claim.generation, scope: store.tokenScope))
            switch settle {
            case "complete": _ = try await store.complete(claim, receipt: [1], timeMilliseconds: time)
            case "release": try await store.release(claim, reason: "no", timeMilliseconds: time)
            case "abandon": try await store.abandon(claim)
            default: break
            }
            return claim
        }
        _ = try await run("released", .forever, at: 1_000, then: "release")
        _ = try await run("in-flight", .whileInFlight, at: 1_000, then: "complete")
        _ = try await run("window", .window(milliseconds: 100), at: 1_000, then: "complete")
        _ = try await run("forever", .forever, at: 1_000, then: "complete")
        _ = try await run("pending", .forever, at: 1_000, then: "abandon")
        let live = try await run("live", .whileInFlight, at: 1_000, then: "none")
        _ = try await run("forgotten", .forever, at: 1_000, then: "complete")
        try await store.forget(ForgetRequest(key: "forgotten", actor: "test", reason: "resend", timeMilliseconds: 1_000))

        try await store.compact(nowMilliseconds: 1_099)
        #expect(try await store.entries(EntryQuery()).map(\.key) == ["forever", "live", "pending", "window"],
                "absent, forgotten and while-in-flight entries are dropped; the window has not passed")
        try await store.compact(nowMilliseconds: 1_100)
        #expect(try await store.entries(EntryQuery()).map(\.key) == ["forever", "live", "pending"])
        try await store.compact(nowMilliseconds: 500)
        #expect(try await store.entryCount() == 3, "a clock gone backwards drops nothing more")

        // Dropped keys run again at the floor (past every dropped generation): new tokens.
        for key in ["released", "in-flight", "window", "forgotten"] {
            let again = try granted(try await store.claim(claimRequest(IdempotencyKey(key), at: 2_000)))
            #expect(again.attempt == 1 && again.generation >= 2, "\(key) starts at the floor")
            let token = EffectToken.derive(key: key, generation: again.generation, scope: store.tokenScope)
            #expect(!tokens.contains(token), "\(key) never gets a token given before")
            _ = try await store.complete(again, receipt: [], timeMilliseconds: 2_000)
        }
        _ = try await store.complete(live, receipt: [], timeMilliseconds: 2_000)

        // The floor is durable: a new store on the schema grants it too.
        let reopened = try await harness.open()
        defer { try? reopened.close() }
        let fresh = try granted(try await reopened.claim(claimRequest("never-seen", at: 3_000)))
        #expect(fresh.generation >= 2)
        _ = try await reopened.complete(fresh, receipt: [], timeMilliseconds: 3_000)
    }
}

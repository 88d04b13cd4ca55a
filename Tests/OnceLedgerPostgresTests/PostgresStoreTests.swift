// Proves that `PostgresStore` keeps the `LedgerStore` contract the file store keeps: the shared
// checks of `OnceLedgerStoreContract` (the same ones `LedgerStoreTests` runs on the file and
// in-memory stores), against a real server (the shared throw-away cluster, one schema per test),
// with a second store on the same schema as the other process where a check has two; and what
// is the PostgreSQL store's own: the batches sent as text work like the prepared ones; settled
// claims are no longer renewed; stores on one schema share
// its ledger id and tokens; concurrent claims in shared statements each get their own answer;
// retention (compact drops what blocks nothing at its time, keeps pending, forever, live and
// unexpired entries, and a dropped key runs again at the raised generation floor, under a token
// never given before). Races are ordered with the store's waiter count and gates, never with
// sleeps or clocks.
import OnceLedger
import OnceLedgerFormat
@testable import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import OnceLedgerStoreContract
import Testing

@Suite(.enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct PostgresStoreTests {
    @Test func claimCompleteAndRelease() async throws {
        try await StoreContract.claimCompleteAndRelease(try PostgresHarness().underTest)
    }

    @Test func doneEntryAnswersOnlyWhatClaimWouldAnswerDone() async throws {
        try await StoreContract.doneEntryAnswersOnlyWhatClaimWouldAnswerDone(try PostgresHarness().underTest)
    }

    @Test func aStaleClaimIsFenced() async throws {
        try await StoreContract.aStaleClaimIsFenced(try PostgresHarness().underTest)
    }

    @Test func aSecondClaimOfALiveKeyIsRunningOrAMismatch() async throws {
        try await StoreContract.aSecondClaimOfALiveKeyIsRunningOrAMismatch(try PostgresHarness().underTest)
    }

    @Test func twoLedgersOnTwoStoresRunTheEffectOnce() async throws {
        try await StoreContract.twoLedgersRunTheEffectOnce(try PostgresHarness().underTest)
    }

    @Test(arguments: [true, false])
    func waitForChangeWakesWhenTheClaimEnds(completes: Bool) async throws {
        try await StoreContract.waitForChangeWakesWhenTheClaimEnds(try PostgresHarness().underTest, completes: completes)
    }

    @Test func aCancelledWaitForChangeThrowsAndLeavesTheClaim() async throws {
        try await StoreContract.aCancelledWaitForChangeThrowsAndLeavesTheClaim(try PostgresHarness().underTest)
    }

    @Test func waitForChangeReturnsAtOnceForAKeyNobodyHolds() async throws {
        try await StoreContract.waitForChangeReturnsAtOnceForAKeyNobodyHolds(try PostgresHarness().underTest)
    }

    @Test func resolveWithAWrongExpectedAttemptIsRefused() async throws {
        try await StoreContract.resolveWithAWrongExpectedAttemptIsRefused(try PostgresHarness().underTest)
    }

    @Test func resolveOfANewerGenerationWithTheSameAttemptIsRefused() async throws {
        try await StoreContract.resolveOfANewerGenerationWithTheSameAttemptIsRefused(try PostgresHarness().underTest)
    }

    @Test func forgetAndResolveOfALiveKeyAreRefused() async throws {
        try await StoreContract.forgetAndResolveOfALiveKeyAreRefused(try PostgresHarness().underTest)
    }

    @Test func entriesArePagedInKeyByteOrder() async throws {
        try await StoreContract.entriesArePagedInKeyByteOrder(try PostgresHarness().underTest)
    }

    @Test func windowScopesExpireOnTheLedgersClock() async throws {
        try await StoreContract.windowScopesExpireOnTheLedgersClock(try PostgresHarness().underTest)
    }

    /// The same batches sent as text naming the schema (`Configuration.preparedStatements`
    /// off, for poolers that keep no prepared statements): claims, completions, releases,
    /// refused (fenced) settles and a waiter woken by another store.
    @Test func theBatchesWorkAsTextToo() async throws {
        let text = try PostgresHarness().underTest(preparedStatements: false)
        try await StoreContract.claimCompleteAndRelease(text)
        try await StoreContract.aStaleClaimIsFenced(try PostgresHarness().underTest(preparedStatements: false))
        try await StoreContract.waitForChangeWakesWhenTheClaimEnds(
            try PostgresHarness().underTest(preparedStatements: false), completes: true)
    }

    @Test func settledClaimsAreNoLongerRenewed() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let done = try granted(try await store.claim(claimRequest("k")))
        #expect(store.liveClaimCount == 1)
        _ = try await store.complete(done, receipt: [], timeMilliseconds: 1_001)
        try await store.release(try granted(try await store.claim(claimRequest("j"))), reason: "no", timeMilliseconds: 1_002)
        try await store.abandon(try granted(try await store.claim(claimRequest("a"))))
        #expect(store.liveClaimCount == 0, "settled claims are no longer renewed")
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

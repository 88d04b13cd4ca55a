// Proves the lease and fencing rules of `PostgresStore` against a real server, with a short
// lease configured per test: a claim whose owner stops renewing (closed like a crashed
// process, or paused past its lease) turns pending-unknown for every other claimer once its
// lease expires (the test waits for that with `waitForChange`, never with a clock), the same
// policies then apply (fail closed, retry with the same token), and a completion from the
// paused owner after the takeover is refused and writes nothing. Also `Ledger.once` end to
// end: two Ledgers on two stores of one schema run an effect once. And renewal: a live owner
// keeps its key past the end of its first lease (read on the database's clock).
import OnceLedger
import OnceLedgerFormat
@testable import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import Testing

@Suite(.enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct PostgresLeaseTests {
    /// Claims `key` on `store` until the answer is not `.running`, waiting for the change in
    /// between (the lease of another owner expiring).
    func claimAfterTheLease(_ store: PostgresStore, _ request: ClaimRequest) async throws -> ClaimResult {
        while true {
            let result = try await store.claim(request)
            guard case .running(let entry) = result else { return result }
            try await store.waitForChange(of: entry)
        }
    }

    @Test func aCrashedOwnersKeyTurnsPendingUnknownForEveryoneAfterItsLease() async throws {
        let harness = try PostgresHarness()
        let crashed = try await harness.open(lease: .milliseconds(300))
        let survivor = try await harness.open(lease: .milliseconds(300))
        defer { try? survivor.close() }
        let claim = try granted(try await crashed.claim(claimRequest("k")))
        try crashed.close()   // stops renewing: the lease runs out like a killed process's

        guard case .pendingUnknown(let entry) = try await claimAfterTheLease(survivor, claimRequest("k")) else {
            Issue.record("after the lease the key is pending-unknown (fail closed writes nothing)")
            return
        }
        #expect(entry.attempt == claim.attempt && entry.status == .pendingUnknown)
        #expect(try await survivor.entry("k")?.attempt == 1, "the .report answer wrote nothing")
        let retried = try granted(try await survivor.claim(claimRequest("k", whenPending: .retry)))
        #expect((retried.attempt, retried.generation) == (2, claim.generation), "a retry keeps the token")
        _ = try await survivor.complete(retried, receipt: [1], timeMilliseconds: 2_000)
    }

    @Test func aLiveOwnerKeepsItsKeyPastTheLeaseByRenewing() async throws {
        let harness = try PostgresHarness()
        // A lease long enough that a renewal (every third of it) is never late on a loaded
        // machine running the whole suite: with 1 s, a renewal delayed by 0.7 s lost the key.
        let owner = try await harness.open(lease: .seconds(4))
        let other = try await harness.open(lease: .seconds(4))
        defer { try? owner.close(); try? other.close() }
        let claim = try granted(try await owner.claim(claimRequest("k")))
        let first = try #require(try await Self.lease(harness, key: "k"))
        guard case .running(let entry) = try await other.claim(claimRequest("k")) else {
            Issue.record("a fresh lease is live")
            return
        }
        let woke = OnceLedgerStoreContract.Gate()
        let waiting = Task {
            try await other.waitForChange(of: entry)
            woke.open()
        }
        try await waitUntil("the other store waits") { other.waiterCount("k") == 1 }
        // Wait (on the database's clock) until the first lease's end has passed: renewals
        // have kept the lease live, so the key is still the owner's. (The waiter may have
        // woken at the first lease's end: `waitForChange` may wake when a claim *may* have
        // changed, and the caller claims again — which the next check does.)
        try await waitUntil("the first lease's end has passed") {
            try await Self.lease(harness, key: "k").map { $0.now > first.expires } ?? false
        }
        let later = try #require(try await Self.lease(harness, key: "k"))
        #expect(later.expires > later.now, "the renewed lease is live past the first lease's end")
        guard case .running = try await other.claim(claimRequest("k", whenPending: .retry)) else {
            Issue.record("a renewed lease is not taken over")
            return
        }
        _ = try await owner.complete(claim, receipt: [7], timeMilliseconds: 2_000)
        try await waiting.value
        guard case .done(let done) = try await other.claim(claimRequest("k")) else {
            Issue.record("the completion is seen by the other store")
            return
        }
        #expect(done.receipt == [7])
    }

    /// The lease of `key` as the database sees it: its expiry and the database's clock now,
    /// in seconds since the epoch (nil without a lease).
    static func lease(_ harness: PostgresHarness, key: String) async throws -> (expires: Double, now: Double)? {
        let store = try await harness.open()
        defer { try? store.close() }
        return try await store.pool.withConnection(.reading("test")) { connection in
            var found: (Double, Double)?
            for try await (expires, now) in try await connection.query("""
                SELECT extract(epoch FROM lease_expires)::float8, extract(epoch FROM clock_timestamp())::float8
                  FROM \(unescaped: "\"\(harness.schema)\"").entries
                 WHERE key = \(ByteBuffer(bytes: Array(key.utf8))) AND lease_expires IS NOT NULL
                """, logger: store.logger).decode((Double, Double).self) {
                found = (expires, now)
            }
            return found
        }
    }

    /// A process paused past its lease (renewal stopped, the process still open) finds its
    /// key taken over when it wakes: its completion is refused and writes nothing, and the
    /// successor's result stands.
    @Test func aCompletionAfterATakeoverIsFenced() async throws {
        let harness = try PostgresHarness()
        let paused = try await harness.open(lease: .milliseconds(300))
        let successor = try await harness.open(lease: .milliseconds(300))
        defer { try? paused.close(); try? successor.close() }
        let first = try granted(try await paused.claim(claimRequest("k")))
        paused.pauseLeaseRenewal(true)

        let takeover = try granted(try await claimAfterTheLease(successor, claimRequest("k", whenPending: .retry)))
        #expect(takeover.attempt == 2 && takeover.generation == first.generation)

        let late = await ledgerError { try await paused.complete(first, receipt: Array("late".utf8), timeMilliseconds: 3_000) }
        #expect(late?.code == .wrongState)
        #expect(late?.entry?.attempt == 2, "the error shows the key's current entry")
        #expect(late?.message.contains("nothing was written") == true)
        let lateRelease = await ledgerError { try await paused.release(first, reason: "late", timeMilliseconds: 3_000) }
        #expect(lateRelease?.code == .wrongState)
        #expect(try await successor.entry("k")?.status == .pendingUnknown, "the late calls wrote nothing")

        let done = try await successor.complete(takeover, receipt: Array("successor".utf8), timeMilliseconds: 3_001)
        #expect(done.receipt == Array("successor".utf8))
        #expect(try await paused.entry("k")?.receipt == Array("successor".utf8))
    }

    /// An expired lease that nobody took over still records its owner's completion: the
    /// effect happened and no one else ran it.
    @Test func aLateCompletionNobodyTookOverIsRecorded() async throws {
        let harness = try PostgresHarness()
        let slow = try await harness.open(lease: .milliseconds(200))
        let other = try await harness.open(lease: .milliseconds(200))
        defer { try? slow.close(); try? other.close() }
        let claim = try granted(try await slow.claim(claimRequest("k")))
        slow.pauseLeaseRenewal(true)
        guard case .pendingUnknown = try await claimAfterTheLease(other, claimRequest("k")) else {
            Issue.record("the expired key is pending-unknown")
            return
        }
        let done = try await slow.complete(claim, receipt: [1], timeMilliseconds: 2_000)
        #expect(done.status == .done && done.attempt == 1)
    }

    /// `Ledger.once` on the PostgreSQL store: an effect that throws leaves the key
    /// pending-unknown, fail-closed refuses it, `.retry` runs it again with the same token,
    /// and an effect that did not happen releases the key.
    @Test func onceEndToEndWithPendingPolicies() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let ledger = Ledger(store: store)
        let tokens = Mutex<[String]>([])
        let failed = await ledgerError {
            try await ledger.once("charge", as: Int.self) { context in
                tokens.withLock { $0.append(context.token) }
                throw TestFailure("timeout")
            }
        }
        #expect(failed?.code == .effectFailed)
        let closed = await ledgerError { try await ledger.once("charge", as: Int.self) { _ in 1 } }
        #expect(closed?.code == .pendingUnknown)
        let retried = try await ledger.once("charge", as: Int.self, whenPending: .retry) { context in
            tokens.withLock { $0.append(context.token) }
            return 42
        }
        #expect(retried.wasPerformed && retried.receipt == 42 && retried.entry.attempt == 2)
        let seen = tokens.withLock { $0 }
        #expect(seen.count == 2 && seen[0] == seen[1], "a retry gets the same token")
        let again = try await ledger.once("charge", as: Int.self) { _ in 0 }
        #expect(!again.wasPerformed && again.receipt == 42)

        let released = await ledgerError {
            try await ledger.once("email", as: Int.self) { _ in throw EffectDidNotHappen("smtp refused") }
        }
        #expect(released?.code == .released)
        #expect(try await store.entry("email")?.status == .absent)
        #expect(try await ledger.once("email", as: Int.self) { _ in 5 }.wasPerformed)
    }
}

import PostgresNIO
import Synchronization
import OnceLedgerStoreContract

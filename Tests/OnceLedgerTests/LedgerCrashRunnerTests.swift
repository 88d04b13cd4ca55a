// Proves that `LedgerCrashRunner` (the test support's crash-testing runner) finds what it is for
// and repeats: small jobs that send "mail" through `once` to a fake provider that
// de-duplicates by idempotency key run under it; a job that passes a new key on a retry is
// caught with a failure naming its seed and crash point, a job that lets `.pendingUnknown`
// escape is reported as a workload failure, a correct job passes with a full-size receipt on
// the fast default configuration, and two runs of one seed see the same crash points and
// the same effect tokens. Seeds are fixed here (1, 2), not read from the environment.
import OnceLedger
import OnceLedgerTestSupport
import Synchronization
import Testing

/// A downstream that de-duplicates by key and records every request.
private actor Provider {
    private(set) var requests: [(job: Int, key: String)] = []
    private var sent: [String: String] = [:]

    func send(job: Int, key: String) -> String {
        requests.append((job, key))
        if let id = sent[key] { return id }
        sent[key] = "m\(sent.count)"
        return sent[key]!
    }
}

private enum KeyChoice: Sendable {
    /// The effect token: a retry presents the same key.
    case token
    /// A new key per attempt: a retry after a crash sends again.
    case tokenAndAttempt
}

private func sendAll(_ jobs: Int, ledger: Ledger, provider: Provider, key choice: KeyChoice,
                     whenPending: PendingPolicy<String> = .retry, padding: Int = 0) async throws {
    for job in 0..<jobs {
        try await ledger.once("job-\(job)", as: String.self, whenPending: whenPending) { effect in
            let key = choice == .token ? effect.token : "\(effect.token)-\(effect.attempt)"
            return await provider.send(job: job, key: key) + String(repeating: "r", count: padding)
        }
    }
}

/// Each job reached the provider under one key at most; at the end every job is done.
private func checkOneKeyPerJob(_ jobs: Int, ledger: Ledger, provider: Provider,
                               epoch: LedgerCrashRunner.Epoch) async throws {
    let requests = await provider.requests
    for job in 0..<jobs {
        let keys = Set(requests.filter { $0.job == job }.map(\.key))
        if keys.count > 1 { throw CrashInvariantViolation("job \(job) sent under \(keys.count) keys") }
        if epoch.isEnd, try ledger.entry("job-\(job)")?.status != .done {
            throw CrashInvariantViolation("job \(job) is not done at the end")
        }
    }
}

@Suite struct LedgerCrashRunnerTests {
    @Test func aJobThatPassesANewKeyOnARetryIsCaughtWithItsSeed() async {
        let report = await LedgerCrashRunner(seeds: [1, 2]).run(
            world: { Provider() },
            workload: { ledger, provider, _ in try await sendAll(3, ledger: ledger, provider: provider, key: .tokenAndAttempt) },
            check: { ledger, provider, epoch in try await checkOneKeyPerJob(3, ledger: ledger, provider: provider, epoch: epoch) })
        #expect(!report.passed)
        let failure = report.failures.first
        #expect(failure?.kind == .invariant)
        #expect(failure?.crashPoint != nil, "only a crash between the send and its completion shows the bug")
        #expect(failure?.problems.first?.contains("sent under 2 keys") == true)
        if let failure {
            #expect(failure.description.contains("crashPoint=\(failure.crashPoint!)"))
            #expect(failure.description.hasSuffix("reproduce with ONCELEDGER_SEED=\(failure.seed)"))
        }
    }

    @Test func theSameJobWithTheTokenAsItsKeyPassesWithAFullSizeReceipt() async {
        // A receipt just under the 64 KiB limit: it needs a segment of 128 KiB, reached by doubling.
        let report = await LedgerCrashRunner(seeds: [1, 2]).run(
            world: { Provider() },
            workload: { ledger, provider, _ in
                try await sendAll(3, ledger: ledger, provider: provider, key: .token, padding: 60_000)
            },
            check: { ledger, provider, epoch in try await checkOneKeyPerJob(3, ledger: ledger, provider: provider, epoch: epoch) })
        for failure in report.failures { Issue.record("\(failure)") }
        #expect(report.crashPoints > 20)
        #expect(report.crashedAtPoint > 0 && report.powerLosses > 0)
    }

    @Test func aPendingUnknownKeyThatEscapesTheWorkloadIsAWorkloadFailure() async {
        let report = await LedgerCrashRunner(seeds: [1]).run(
            world: { Provider() },
            workload: { ledger, provider, _ in
                try await sendAll(2, ledger: ledger, provider: provider, key: .token, whenPending: .failClosed)
            })
        let failure = report.failures.first
        #expect(failure?.kind == .workloadFailed)
        #expect((failure?.error as? LedgerError)?.code == .pendingUnknown)
    }

    @Test func twoRunsOfOneSeedCrashTheSamePointsWithTheSameTokens() async {
        func run() async -> (LedgerCrashRunner.Report, [[String]]) {
            let worlds = Mutex<[Provider]>([])
            let report = await LedgerCrashRunner(seeds: [2], crashedReruns: 2).run(
                world: {
                    let provider = Provider()
                    worlds.withLock { $0.append(provider) }
                    return provider
                },
                workload: { ledger, provider, _ in try await sendAll(3, ledger: ledger, provider: provider, key: .token) })
            var keys: [[String]] = []
            for provider in worlds.withLock({ $0 }) { keys.append(await provider.requests.map(\.key)) }
            return (report, keys)
        }
        let (first, firstKeys) = await run()
        let (second, secondKeys) = await run()
        #expect(first.passed && second.passed)
        #expect(first.crashPoints == second.crashPoints && first.referenceOperations == second.referenceOperations)
        #expect(first.crashedAtPoint == second.crashedAtPoint && first.diedInOpen == second.diedInOpen)
        #expect(first.powerLosses == second.powerLosses && first.processKills == second.processKills)
        #expect(firstKeys == secondKeys, "effect tokens derive from the seed")
        #expect(firstKeys.count == first.crashPoints + 1)
    }

    @Test func defaultSeedsAreTheSameOnEveryRun() {
        if let pinned = CrashSeeds.pinned {
            #expect(CrashSeeds.fixed(3) == [pinned])
        } else {
            #expect(CrashSeeds.fixed(3) == [1, 2, 3])
        }
        #expect(LedgerCrashRunner().seeds == CrashSeeds.fixed(CrashSeeds.iterations(default: 4)))
    }
}

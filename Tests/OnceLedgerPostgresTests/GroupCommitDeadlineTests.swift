// Proves that group commit never holds its callers for ever: a batch whose statement never
// answers (a connection cut while the server restarts once left such a query) fails every
// caller of the batch with `connection-lost` once the answer deadline passed, and a batch that
// answers in time returns each caller its own response. No server is needed: the flush is a
// closure. The never-answering flush sleeps for an hour; the test waits only for the deadline.
// And that with one lane (a store's default) the requests arriving while a batch is on the wire
// go together as the next batch, unless that batch stalls: then they go on one more flusher.
import OnceLedgerFormat
@testable import OnceLedgerPostgres
import Synchronization
import Testing
import OnceLedgerStoreContract

@Suite struct GroupCommitDeadlineTests {
    @Test func aBatchWithoutAnAnswerFailsItsCallersAsConnectionLost() async throws {
        let commit = GroupCommit<Int, Int>(lanes: 1, batchMax: 8, answerDeadline: .milliseconds(50)) { _ in
            try await Task.sleep(for: .seconds(3600))
            return []
        }
        do {
            _ = try await commit.submit(1)
            Issue.record("a batch nobody answered returned")
        } catch let error as LedgerError {
            #expect(error.code == .connectionLost)
            #expect(error.message.contains("outcome is unknown"))
        }
    }

    @Test func aBatchAnsweredInTimeReturnsEachCallerItsOwnResponse() async throws {
        let commit = GroupCommit<Int, Int>(lanes: 2, batchMax: 8, answerDeadline: .seconds(60)) { requests in
            requests.map { $0 * 10 }
        }
        let answers = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for request in 0..<20 { group.addTask { (request, try await commit.submit(request)) } }
            var all: [(Int, Int)] = []
            for try await answer in group { all.append(answer) }
            return all
        }
        #expect(answers.count == 20)
        #expect(answers.allSatisfy { $0.1 == $0.0 * 10 })
    }
}

@Suite struct GroupCommitLaneTests {
    /// The only lane's batch never answers; once the deadline failed it, the next request is
    /// sent on a new flusher and answered (the stuck statement does not hold the lane).
    @Test func aLaneStuckOnAnUnansweredBatchIsGivenToANewFlusher() async throws {
        let calls = Calls()
        let commit = GroupCommit<Int, Int>(lanes: 1, batchMax: 8, answerDeadline: .milliseconds(50)) { requests in
            if calls.next() == 0 { try await Task.sleep(for: .seconds(3600)) }
            return requests.map { $0 + 1 }
        }
        await #expect(throws: LedgerError.self) { _ = try await commit.submit(1) }
        #expect(try await commit.submit(41) == 42)
    }

    /// With one lane, the requests that arrive while a batch is on the wire wait for it and
    /// then go together, as one batch (one statement, one commit), not one batch each.
    @Test func withOneLaneTheRequestsArrivingMeanwhileGoAsOneBatch() async throws {
        let gate = OnceLedgerStoreContract.Gate()
        let sizes = Mutex<[Int]>([])
        let commit = GroupCommit<Int, Int>(lanes: 1, batchMax: 64) { requests in
            sizes.withLock { $0.append(requests.count) }
            if requests == [0] { await gate.wait() }
            return requests.map { $0 * 2 }
        }
        let first = Task { try await commit.submit(0) }
        try await waitUntil("the first batch is on the wire") { sizes.withLock { $0.count } == 1 }
        let others = Task {
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for request in 1...10 { group.addTask { try await commit.submit(request) == request * 2 } }
                return try await group.reduce(true) { $0 && $1 }
            }
        }
        try await waitUntil("ten requests queue behind it") { commit.queuedCount == 10 }
        gate.open()
        #expect(try await first.value == 0)
        #expect(try await others.value, "each caller got its own answer")
        #expect(sizes.withLock { $0 } == [1, 10])
    }

    /// With one lane, a batch that goes unanswered (a slow statement, a lock wait, a hung
    /// connection) does not hold the requests queued behind it until the answer deadline: once
    /// it stalled for `stallAfter`, they go on one more flusher and are answered meanwhile.
    @Test func aStalledBatchDoesNotHoldTheRequestsQueuedBehindIt() async throws {
        let gate = OnceLedgerStoreContract.Gate()
        let started = Mutex(false)
        // Without the extra flusher, the second request would wait for the deadline to fail the
        // first batch (and the first caller would get `connection-lost`): the test then fails.
        let commit = GroupCommit<Int, Int>(lanes: 1, maxLanes: 2, stallAfter: .milliseconds(20), batchMax: 8,
                                           answerDeadline: .seconds(30)) { requests in
            if requests == [0] {
                started.withLock { $0 = true }
                await gate.wait()
            }
            return requests.map { $0 + 100 }
        }
        let stalled = Task { try await commit.submit(0) }
        try await waitUntil("the first batch is on the wire") { started.withLock { $0 } }
        #expect(try await commit.submit(1) == 101, "answered while the first batch is still on the wire")
        #expect(!gate.isOpen)
        gate.open()
        #expect(try await stalled.value == 100)
    }

    /// A store sends one batch of each kind at a time unless configured otherwise, and never
    /// more than its connections less one.
    @Test func aStoreKeepsOneBatchOfEachKindOnTheWireByDefault() throws {
        var configuration = PostgresStore.Configuration(url: try PostgresURL("postgres://u@/d?host=/tmp"), connections: 8)
        #expect(configuration.lanes == 1)
        configuration.batchesInFlight = 4
        #expect(configuration.lanes == 4)
        configuration.batchesInFlight = 20
        #expect(configuration.lanes == 7)
        configuration.connections = 1
        #expect(configuration.lanes == 1)
    }

    final class Calls: Sendable {
        private let count = Mutex(0)
        func next() -> Int { count.withLock { value in defer { value += 1 }; return value } }
    }
}

// Proves that group commit never holds its callers for ever: a batch whose statement never
// answers (a connection cut while the server restarts once left such a query) fails every
// caller of the batch with `connection-lost` once the answer deadline passed, and a batch that
// answers in time returns each caller its own response. No server is needed: the flush is a
// closure. The never-answering flush sleeps for an hour; the test waits only for the deadline.
import OnceLedgerFormat
@testable import OnceLedgerPostgres
import Synchronization
import Testing

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

    final class Calls: Sendable {
        private let count = Mutex(0)
        func next() -> Int { count.withLock { value in defer { value += 1 }; return value } }
    }
}

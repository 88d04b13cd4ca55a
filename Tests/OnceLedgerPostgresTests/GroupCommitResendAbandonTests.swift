// Proves that group commit stops sending a refused batch's requests one by one once the watchdog
// gave the batch up at its answer deadline: its callers were already answered (connection-lost,
// outcome unknown), so a request sent after that is committed for nobody — a claim written with a
// lease nobody renews, pending-unknown when the caller retries, instead of simply absent. Before,
// the one-by-one re-send went on through every request of the batch after the deadline. No
// server: the flush is a closure; the first request sent alone waits until every caller has its
// error.
import OnceLedgerFormat
@testable import OnceLedgerPostgres
import OnceLedgerStoreContract
import Synchronization
import Testing

@Suite struct GroupCommitResendAbandonTests {
    struct Refused: Error {}

    @Test func noRequestIsSentAgainAfterTheBatchWasGivenUp() async throws {
        let gate = OnceLedgerStoreContract.Gate()
        let first = OnceLedgerStoreContract.Gate()
        let sent = Mutex<[[Int]]>([])
        // A deadline no machine reaches while three requests queue behind the first batch;
        // the test passes it itself, once the refused batch's first request is re-sent.
        let commit = GroupCommit<Int, Int>(lanes: 1, batchMax: 8, answerDeadline: .seconds(600),
                                           refusedWhole: { $0 is Refused }) { requests in
            sent.withLock { $0.append(requests) }
            if requests == [0] { await first.wait() }
            if requests.count > 1 { throw Refused() }
            if requests == [1] { await gate.wait() }
            return requests
        }
        // The three requests go as one batch: the first holds the only lane until they queued.
        let started = Task { try await commit.submit(0) }
        try await waitUntil("the first batch is on the wire") { sent.withLock { $0.count } == 1 }
        let callers = Task {
            await withTaskGroup(of: LedgerError.Code?.self) { group in
                for request in 1...3 {
                    group.addTask {
                        do { _ = try await commit.submit(request); return nil } catch let error as LedgerError { return error.code } catch { return nil }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
        }
        try await waitUntil("three requests queue behind it") { commit.queuedCount == 3 }
        first.open()
        _ = try await started.value
        try await waitUntil("the refused batch's first request is sent again") { sent.withLock { $0.count } == 3 }
        commit.advanceWatchdogClock(by: .seconds(601))
        let codes = await callers.value
        #expect(codes == [.connectionLost, .connectionLost, .connectionLost], "every caller was given up")
        gate.open()
        try await waitUntil("every flusher ended") { commit.drainingCount == 0 }
        #expect(sent.withLock { $0 } == [[0], [1, 2, 3], [1]], "nothing sent after the batch was given up")
    }
}

/// A batch given up before its statement started (its deadline passed while it waited for a
/// pooled connection) is not sent at all: before, `BatchAbort.whileRunning` closed the connection
/// "soon" and still ran the statement, so a claim could be committed for callers already told
/// connection-lost.
@Suite struct BatchAbortBeforeSendTests {
    @Test func aBatchGivenUpBeforeItsStatementIsNotSent() async throws {
        let abort = BatchAbort()
        abort.fire()
        let closed = Mutex(false)
        let ran = Mutex(false)
        do {
            try await abort.whileRunning(onAbort: { closed.withLock { $0 = true } }) { ran.withLock { $0 = true } }
            Issue.record("no error")
        } catch let error as LedgerError {
            #expect(error.code == .connectionLost)
        }
        #expect(!ran.withLock { $0 }, "the statement was sent after the batch was given up")
        #expect(closed.withLock { $0 }, "its connection is closed")
    }
}

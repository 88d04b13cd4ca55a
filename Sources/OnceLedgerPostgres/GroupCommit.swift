import OnceLedgerFormat
import Synchronization

/// Group commit (`Spec/POSTGRES.md` §5): concurrent callers' requests are queued, and up to
/// `lanes` flushers each take everything queued (at most `batchMax`) and send it as one
/// statement — one round trip and one commit for the whole batch. A lone caller's request
/// is sent at once (no timer); callers that arrive while a batch is on the wire form the
/// next one.
final class GroupCommit<Request: Sendable, Response: Sendable>: Sendable {
    typealias Flush = @Sendable ([Request]) async throws -> [Response]

    private struct State {
        var queue: [(Request, CheckedContinuation<Response, any Error>)] = []
        var flushing = 0
    }

    private let lanes: Int
    private let batchMax: Int
    private let answerDeadline: Duration
    private let flush: Flush
    private let state = Mutex(State())

    /// `answerDeadline`: how long a batch waits for the server's answer before its callers
    /// get `connection-lost` (outcome unknown) instead of waiting on (`Spec/POSTGRES.md` §5).
    init(lanes: Int, batchMax: Int, answerDeadline: Duration = .seconds(60), flush: @escaping Flush) {
        self.lanes = max(1, lanes)
        self.batchMax = max(1, batchMax)
        self.answerDeadline = answerDeadline
        self.flush = flush
    }

    /// `flush(requests)`, or `connection-lost` once `answerDeadline` passed without an
    /// answer. A batch whose answer never comes (a connection cut while the server restarts
    /// can leave a query that neither completes nor fails) must not hold its callers for
    /// ever: they are told the outcome is unknown, as after a crash — a claim made then
    /// expires with its lease, never renewed, and turns pending-unknown.
    private func flushWithDeadline(_ requests: [Request]) async throws -> [Response] {
        let flush = self.flush
        let deadline = answerDeadline
        let count = requests.count
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[Response], any Error>) in
            let pending = Pending(continuation)
            let timer = Task {
                try? await Task.sleep(for: deadline)
                guard !Task.isCancelled, let waiting = pending.take() else { return }
                waiting.resume(throwing: LedgerError(
                    .connectionLost,
                    "the PostgreSQL server did not answer a batch of \(count) requests within \(deadline); their outcome is unknown to this client (treat it like a crash: a claim turns pending-unknown when its lease expires). Check that the server is up"))
            }
            Task {
                let result: Result<[Response], any Error>
                do { result = .success(try await flush(requests)) } catch { result = .failure(error) }
                timer.cancel()
                pending.take()?.resume(with: result)
            }
        }
    }

    /// A continuation resumed by whichever comes first, the answer or the deadline.
    private final class Pending: Sendable {
        private let continuation: Mutex<CheckedContinuation<[Response], any Error>?>
        init(_ continuation: CheckedContinuation<[Response], any Error>) { self.continuation = Mutex(continuation) }
        func take() -> CheckedContinuation<[Response], any Error>? { continuation.withLock { $0.take() } }
    }

    /// Sends `request` with whatever else is queued; returns its own response, or throws
    /// what the batch's statement threw.
    func submit(_ request: Request) async throws -> Response {
        try await withCheckedThrowingContinuation { continuation in
            let start = state.withLock { state -> Bool in
                state.queue.append((request, continuation))
                guard state.flushing < lanes else { return false }
                state.flushing += 1
                return true
            }
            if start { Task { await self.drain() } }
        }
    }

    /// Requests waiting for a batch (tests order races with it).
    var queuedCount: Int { state.withLock { $0.queue.count } }

    private func drain() async {
        while true {
            let batch = state.withLock { state -> [(Request, CheckedContinuation<Response, any Error>)]? in
                if state.queue.isEmpty {
                    state.flushing -= 1
                    return nil
                }
                let taken = Array(state.queue.prefix(batchMax))
                state.queue.removeFirst(taken.count)
                return taken
            }
            guard let batch else { return }
            do {
                let responses = try await flushWithDeadline(batch.map(\.0))
                for (index, (_, continuation)) in batch.enumerated() {
                    if index < responses.count {
                        continuation.resume(returning: responses[index])
                    } else {
                        continuation.resume(throwing: LedgerError(
                            .databaseError, "the server answered \(responses.count) rows for a batch of \(batch.count) requests; the outcome of this one is unknown"))
                    }
                }
            } catch {
                for (_, continuation) in batch { continuation.resume(throwing: error) }
            }
        }
    }
}

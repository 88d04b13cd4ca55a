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
    private let flush: Flush
    private let state = Mutex(State())

    init(lanes: Int, batchMax: Int, flush: @escaping Flush) {
        self.lanes = max(1, lanes)
        self.batchMax = max(1, batchMax)
        self.flush = flush
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
                let responses = try await flush(batch.map(\.0))
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

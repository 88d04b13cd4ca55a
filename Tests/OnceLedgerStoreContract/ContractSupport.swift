// Helpers of the store contract and of the test targets that run it (no test here): requests,
// the claim a result granted, the error a call threw, polling for a condition, a gate and a
// counter to order races with.
import OnceLedger
import OnceLedgerFormat
import Synchronization
import Testing

public func claimRequest(_ key: IdempotencyKey, scope: DeduplicationScope = .forever,
                         whenPending: PendingTakeover = .report, at time: UInt64 = 1_000) -> ClaimRequest {
    ClaimRequest(key: key, scope: scope, whenPending: whenPending, timeMilliseconds: time)
}

public struct TestFailure: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String = "boom") { self.description = description }
}

/// The claim `result` granted; records an issue (and throws) if it is anything else.
public func granted(_ result: ClaimResult, sourceLocation: SourceLocation = #_sourceLocation) throws -> Claim {
    guard case .claimed(let claim) = result else {
        Issue.record("expected .claimed, got \(result)", sourceLocation: sourceLocation)
        throw TestFailure("not claimed")
    }
    return claim
}

/// The `LedgerError` `body` throws; records an issue if it returns or throws something else.
public func ledgerError<T>(_ body: () async throws -> T,
                           sourceLocation: SourceLocation = #_sourceLocation) async -> LedgerError? {
    do {
        let value = try await body()
        Issue.record("expected a LedgerError, got \(value)", sourceLocation: sourceLocation)
        return nil
    } catch let error as LedgerError {
        return error
    } catch {
        Issue.record("expected a LedgerError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Polls `condition` every millisecond until it holds; records an issue and throws after
/// about 20 s, so a broken test fails instead of hanging.
public func waitUntil(_ what: String, _ condition: () async throws -> Bool) async throws {
    for _ in 0..<20_000 {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(1))
    }
    Issue.record("timed out waiting until \(what)")
    throw TestFailure("timed out: \(what)")
}

/// A one-shot latch: `wait()` suspends until `open()`.
public final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    public init() {}

    public func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    public var isOpen: Bool { state.withLock { $0.open } }

    public func wait() async {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }
}

public final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    public init() {}
    @discardableResult public func increment() -> Int { value.add(1, ordering: .sequentiallyConsistent).newValue }
    public var count: Int { value.load(ordering: .sequentiallyConsistent) }
}

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

/// A one-shot latch: `wait()` suspends until `open()`. A wait has a bound (`patience`, far
/// beyond what any test needs, never a timing assertion): past it the test records an issue and
/// the wait returns, so a gate nobody opens fails its test instead of hanging the test run.
public final class Gate: Sendable {
    private struct State {
        var open = false
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Bool, Never>] = [:]
        var expired: Set<Int> = []
    }

    private let state = Mutex(State())

    public init() {}

    public func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [:] }
            return state.waiters.values
        }
        for waiter in waiters { waiter.resume(returning: false) }
    }

    public var isOpen: Bool { state.withLock { $0.open } }

    public func wait(patience: Duration = .seconds(300)) async {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        let timer = Task { [self] in
            try? await Task.sleep(for: patience)
            if !Task.isCancelled { expire(id) }
        }
        let timedOut = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let answer: Bool? = state.withLock { state in
                if state.open { return false }
                if state.expired.remove(id) != nil { return true }
                state.waiters[id] = continuation
                return nil
            }
            if let answer { continuation.resume(returning: answer) }
        }
        timer.cancel()
        if timedOut { Issue.record("a gate was not opened within \(patience): the test gave up waiting") }
    }

    private func expire(_ id: Int) {
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
            if !state.open { state.expired.insert(id) }
            return nil
        }
        waiter?.resume(returning: true)
    }
}

public final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    public init() {}
    @discardableResult public func increment() -> Int { value.add(1, ordering: .sequentiallyConsistent).newValue }
    public var count: Int { value.load(ordering: .sequentiallyConsistent) }
}

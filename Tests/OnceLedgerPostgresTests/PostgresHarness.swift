// Helpers of the PostgreSQL suites (no test here): a store on a schema of its own on the shared
// throw-away server, and the small synchronisation tools the tests order races with.
import Foundation
import OnceLedger
import OnceLedgerFormat
import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import Synchronization
import Testing

/// Stores on one fresh schema of the shared server: every test uses its own schema, so
/// tests run in parallel on one server without seeing each other.
struct PostgresHarness {
    let server: PostgresTestServer
    let schema: String

    init(name: String = #function) throws {
        server = try PostgresTestServer.shared()
        let clean = name.lowercased().filter { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") }.prefix(24)
        schema = "t_\(clean)_\(UInt32.random(in: 0...UInt32.max))"
    }

    func open(lease: Duration = .seconds(30), connections: Int = 4, owner: String? = nil) async throws -> PostgresStore {
        try await PostgresStore.connect(configuration: PostgresStore.Configuration(
            url: try PostgresURL(server.url), schema: schema, lease: lease, connections: connections, owner: owner))
    }
}

func claimRequest(_ key: IdempotencyKey, scope: DeduplicationScope = .forever, whenPending: PendingTakeover = .report,
                  at time: UInt64 = 1_000) -> ClaimRequest {
    ClaimRequest(key: key, scope: scope, whenPending: whenPending, timeMilliseconds: time)
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The claim `result` granted; records an issue (and throws) if it is anything else.
func granted(_ result: ClaimResult, sourceLocation: SourceLocation = #_sourceLocation) throws -> Claim {
    guard case .claimed(let claim) = result else {
        Issue.record("expected .claimed, got \(result)", sourceLocation: sourceLocation)
        throw TestFailure("not claimed")
    }
    return claim
}

/// The `LedgerError` `body` throws; records an issue if it returns or throws something else.
func ledgerError<T>(_ body: () async throws -> T, sourceLocation: SourceLocation = #_sourceLocation) async -> LedgerError? {
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
func waitUntil(_ what: String, _ condition: () async throws -> Bool) async throws {
    for _ in 0..<20_000 {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(1))
    }
    Issue.record("timed out waiting until \(what)")
    throw TestFailure("timed out: \(what)")
}

final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    var isOpen: Bool { state.withLock { $0.open } }

    func wait() async {
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

final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    @discardableResult func increment() -> Int { value.add(1, ordering: .sequentiallyConsistent).newValue }
    var count: Int { value.load(ordering: .sequentiallyConsistent) }
}

// Proves `SpinningExecutor` runs the tasks that prefer it on its own thread (also after
// each await of a commit), that appends from such tasks are durable and in order, that
// many tasks can share it, and that after `shutdown()` a task still preferring it keeps
// running (on the global executor) instead of hanging.
import Foundation
@testable import OnceLedgerLog
import Synchronization
import Testing

@Suite struct SpinningExecutorTests {
    static func currentThread() -> UInt { UInt(pthread_self()) }

    @Test(.timeLimit(.minutes(5))) func tasksRunOnItsThreadAcrossCommits() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let executor = SpinningExecutor(name: "test-executor")
        defer { executor.shutdown() }
        let engine = try LogEngine.open(directory: directory)
        let (sequences, threads) = try await withTaskExecutorPreference(executor) {
            var sequences: [UInt64] = []
            var threads = Set<UInt>()
            for index in 0..<50 {
                threads.insert(Self.currentThread())
                sequences.append(try await engine.append(kind: .opaque, body: Array("r\(index)".utf8)))
                threads.insert(Self.currentThread())
            }
            return (sequences, threads)
        }
        try engine.close()
        #expect(sequences == Array(1...50))
        #expect(threads == [executor.threadID.load(ordering: .relaxed)], "every step ran on the executor's thread")

        let (reopened, records) = try readAll(directory)
        defer { try? reopened.close() }
        let bodies = records.filter { $0.header.kind == .opaque }.map { String(decoding: $0.body, as: UTF8.self) }
        #expect(bodies == (0..<50).map { "r\($0)" })
    }

    /// Many tasks on one executor: every append completes, each gets its own sequence
    /// numbers, and they still share commit batches.
    @Test(.timeLimit(.minutes(5))) func manyTasksShareIt() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let executor = SpinningExecutor(name: "test-executor-many", spinMicroseconds: 50)
        defer { executor.shutdown() }
        let engine = try LogEngine.open(directory: directory)
        defer { try? engine.close() }
        let sequences = try await withTaskExecutorPreference(executor) {
            try await withThrowingTaskGroup(of: [UInt64].self) { group in
                for task in 0..<32 {
                    group.addTask {
                        var mine: [UInt64] = []
                        for index in 0..<20 {
                            mine.append(try await engine.append(kind: .opaque, body: Array("t\(task)-\(index)".utf8)))
                        }
                        return mine
                    }
                }
                return try await group.reduce(into: [UInt64]()) { $0 += $1 }
            }
        }
        #expect(sequences.sorted() == Array(1...640))
        #expect(engine.commitStatistics.batches < 640, "appends from tasks on one executor still share batches")
    }

    /// After `shutdown()` the thread ends once its queue is empty; a task that still
    /// prefers the executor runs on the global executor, and appends still work.
    @Test(.timeLimit(.minutes(5))) func afterShutdownTasksStillRun() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let executor = SpinningExecutor(name: "test-executor-stop")
        let engine = try LogEngine.open(directory: directory)
        defer { try? engine.close() }
        let first = try await withTaskExecutorPreference(executor) {
            try await engine.append(kind: .opaque, body: [1])
        }
        executor.shutdown()
        executor.shutdown()
        await executor.stopped()
        let (second, threads) = try await withTaskExecutorPreference(executor) {
            var threads = [Self.currentThread()]
            await Task.yield()
            let sequence = try await engine.append(kind: .opaque, body: [2])
            threads.append(Self.currentThread())
            return (sequence, threads)
        }
        #expect(first == 1)
        #expect(second == 2)
        #expect(!threads.contains(executor.threadID.load(ordering: .relaxed)), "the stopped executor's thread ran nothing")
    }
}

// Proves two edges of a compaction's snapshot and deletions (`LogWriter.writeSnapshot`,
// `removeCovered`), found by an outside review: a receipt that reads but has not the length its
// entry records refuses the compaction without poisoning the writer (Spec FORMAT §8, step 2);
// and a covered segment that readers cannot keep open (no file descriptor left, say) is not
// deleted, nor any after it, and the next compaction deletes them. On `SimulatedStorage`.
import OnceLedgerFormat
@testable import OnceLedgerLog
import OnceLedgerTestSupport
import Synchronization
import Testing

@Suite struct CompactionEdgeTests {
    static let directory = "/ledger"

    /// `SimulatedStorage`, except that a read-only open of a path containing `refused`
    /// fails (`EMFILE`) while it is set.
    final class RefusingOpens: Storage {
        let inner: SimulatedStorage
        let refused = Mutex<String?>(nil)
        init(_ inner: SimulatedStorage) { self.inner = inner }

        func listDirectory(_ path: String) throws -> [String] { try inner.listDirectory(path) }
        func createDirectory(_ path: String) throws { try inner.createDirectory(path) }
        func exists(_ path: String) -> Bool { inner.exists(path) }
        func openFile(_ path: String, mode: FileOpenMode) throws -> any StorageFile {
            if mode == .readOnly, let refused = refused.withLock({ $0 }), path.contains(refused) {
                throw LedgerError(.io, "cannot open: Too many open files (errno 24)", path: path)
            }
            return try inner.openFile(path, mode: mode)
        }
        func rename(_ from: String, to: String) throws { try inner.rename(from, to: to) }
        func removeFile(_ path: String) throws { try inner.removeFile(path) }
        func synchronizeDirectory(_ path: String) throws { try inner.synchronizeDirectory(path) }
        func lockDirectory(_ path: String) throws -> any StorageLock { try inner.lockDirectory(path) }
    }

    static func segments(_ storage: SimulatedStorage) -> [UInt64] {
        storage.listFiles().compactMap { LedgerFileNames.parseSegment(String($0.split(separator: "/").last ?? "")) }.sorted()
    }

    @Test func aReceiptOfTheWrongLengthRefusesTheCompactionWithoutPoisoning() async throws {
        let storage = SimulatedStorage(seed: 21)
        let engine = try LogEngine.open(directory: Self.directory, storage: storage, clock: { 1 })
        defer { try? engine.close() }
        for index in 0..<4 { _ = try await engine.append(kind: .opaque, body: [UInt8(index)]) }
        await #expect {
            _ = try await engine.compactStreaming({ _ in
                // The hint says 10 receipt bytes; the read gives 3.
                LogWriter.CompactionSource(items: [.receiptLater(.opaque, hint: [UInt8](repeating: 0, count: 8), receiptBytes: 10)],
                                           receipt: { _ in [1, 2, 3] })
            })
        } throws: { ($0 as? LedgerError)?.code == .corruptRecord }
        #expect(engine.poisonError == nil)
        #expect(!storage.listFiles().contains { $0.hasSuffix(LedgerFileNames.temporarySuffix) })
        #expect(!storage.listFiles().contains { LedgerFileNames.parseSnapshot(String($0.split(separator: "/").last ?? "")) != nil })
        // The writer goes on.
        _ = try await engine.append(kind: .opaque, body: [9])
        _ = try await engine.compact { _ in [] }
    }

    @Test func aSegmentReadersCannotKeepOpenIsKeptUntilTheNextCompaction() async throws {
        let simulated = SimulatedStorage(seed: 22)
        let storage = RefusingOpens(simulated)
        var configuration = LogConfiguration(segmentBytes: 16384)
        configuration.initialSegmentBytes = 4096
        var engine = try LogEngine.open(directory: Self.directory, storage: storage, configuration: configuration,
                                        clock: { 1 })
        for index in 0..<60 { _ = try await engine.append(kind: .opaque, body: [UInt8](repeating: UInt8(index), count: 500)) }
        let before = Self.segments(simulated)
        #expect(before.count >= 4, "\(before)")
        // The second segment cannot be opened for readers: it and every later one stay.
        storage.refused.withLock { $0 = LedgerFileNames.segment(before[1]) }
        let first = try await engine.compact { _ in [] }
        #expect(first.deletedSegments == [before[0]])
        let kept = Self.segments(simulated)
        #expect(Array(kept.prefix(before.count - 1)) == Array(before.dropFirst()), "kept \(kept)")
        #expect(engine.poisonError == nil)
        storage.refused.withLock { $0 = nil }
        _ = try await engine.append(kind: .opaque, body: [1])
        let second = try await engine.compact { _ in [] }
        #expect(Set(second.deletedSegments).isSuperset(of: before.dropFirst()), "\(second.deletedSegments)")
        try engine.close()
        // A reopen finds the last snapshot and the segments after it, contiguous.
        engine = try LogEngine.open(directory: Self.directory, storage: storage, configuration: configuration, clock: { 1 })
        #expect(engine.recovery.snapshot?.coveredSequence == second.coveredSequence)
        try engine.close()
    }
}

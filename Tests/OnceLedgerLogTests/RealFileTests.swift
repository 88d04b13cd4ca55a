// Proves the engine works on real files: append, close, reopen, read back in order
// with the same bytes; rollover across segments; a second opener of one directory
// gets a typed `.locked` error naming the holder's pid; concurrent appends share
// commit batches, and the batch timings account for every batch.
import Foundation
import OnceLedgerFormat
@_spi(Benchmarks) import OnceLedgerLog
import Synchronization
import Testing

func temporaryDirectory(_ name: String = #function) -> String {
    let base = FileManager.default.temporaryDirectory.path
    let clean = name.filter { $0.isLetter || $0.isNumber }
    let path = "\(base)/onceledger-tests-\(clean)-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.removeItem(atPath: path)
    return path
}

func readAll(_ directory: String, storage: any Storage = PosixStorage(),
             configuration: LogConfiguration = LogConfiguration()) throws -> (LogEngine, [ScannedRecord]) {
    var records: [ScannedRecord] = []
    let engine = try LogEngine.open(directory: directory, storage: storage, configuration: configuration,
                                    onRecord: { records.append($0) })
    return (engine, records)
}

@Suite struct RealFileTests {
    @Test func appendCloseReopenReadBack() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = LogConfiguration(segmentBytes: 8192)
        var written: [[UInt8]] = []
        do {
            let engine = try LogEngine.open(directory: directory, configuration: configuration)
            var expected: UInt64 = 1
            for index in 0..<200 {
                let body = Array("record-\(index)-".utf8) + [UInt8](repeating: UInt8(index % 251), count: index % 97)
                let segment = engine.activeSegment
                let sequence = try await engine.append(kind: .opaque, body: body)
                // A rollover seals the old segment first: the seal takes a sequence number.
                if engine.activeSegment != segment { expected += 1 }
                #expect(sequence == expected)
                expected += 1
                written.append(body)
            }
            #expect(engine.activeSegment > 1, "200 records must cross several 8 KiB segments")
            try engine.close()
        }
        let (engine, records) = try readAll(directory, configuration: configuration)
        defer { try? engine.close() }
        let opaque = records.filter { $0.header.kind == .opaque }
        #expect(opaque.map(\.body) == written)
        #expect(records.map(\.header.sequence) == Array(1...UInt64(records.count)))
        #expect(records.filter { $0.header.kind == .seal }.map(\.segment) == Array(1..<engine.activeSegment),
                "every segment but the last ends with a seal")
        #expect(engine.recovery.row.label.hasPrefix("R11"))
    }

    @Test func secondOpenerGetsLockedErrorNamingHolder() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try LogEngine.open(directory: directory)
        defer { try? first.close() }
        #expect {
            _ = try LogEngine.open(directory: directory)
        } throws: { error in
            guard let error = error as? LedgerError else { return false }
            return error.code == .locked && error.holderPID == getpid()
        }
    }

    @Test func concurrentAppendsShareBatches() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let engine = try LogEngine.open(directory: directory)
        let sequences = try await withThrowingTaskGroup(of: UInt64.self) { group in
            for index in 0..<512 {
                group.addTask { try await engine.append(kind: .opaque, body: Array("c\(index)".utf8)) }
            }
            var all: [UInt64] = []
            for try await sequence in group { all.append(sequence) }
            return all
        }
        #expect(Set(sequences).count == 512)
        let stats = engine.commitStatistics
        #expect(stats.records == 512)
        #expect(stats.batches < 512, "group commit must batch concurrent appenders")
        try engine.close()
        let (reopened, records) = try readAll(directory)
        defer { try? reopened.close() }
        #expect(records.filter { $0.header.kind == .opaque }.count == 512)
    }

    /// `batchTimings` accounts for every batch of appends: after `close` (which
    /// stops the I/O thread) it holds one commit, onDurable and resume per batch, and
    /// at most one idle gap per batch that followed another. Only counts are checked,
    /// never durations.
    @Test func batchTimingsCountEveryBatch() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let engine = try LogEngine.open(directory: directory)
        let start = engine.batchTimings
        #expect(start == LogEngine.BatchTimings())
        let appends = 20
        let applied = Mutex(0)
        for index in 0..<appends {
            _ = try await engine.append([LogRecord(kind: .opaque, body: Array("t\(index)".utf8))],
                                        onDurable: { _ in applied.withLock { $0 += 1 } })
        }
        try engine.close()
        let timings = engine.batchTimings.since(start)
        #expect(applied.withLock { $0 } == appends)
        #expect(timings.batches == engine.commitStatistics.batches)
        #expect(timings.batches == UInt64(appends), "sequential appends commit one batch each")
        #expect(timings.commitNanoseconds > 0, "a commit includes an fdatasync; it cannot take no time")
        // Which gaps count depends on timing (only those under 1 ms), so only the bound is checked.
        #expect(timings.gaps <= timings.batches - 1)
        #expect(timings.since(timings) == LogEngine.BatchTimings())
        #expect((timings + start).since(start) == timings)
    }

    /// `startWriteback` (a compaction's snapshot calls it every 8 MiB) is a hint: any range,
    /// past the end too, changes no byte, and the file syncs and reads back as written.
    @Test func startingWritebackChangesNothingWritten() throws {
        let directory = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let storage = PosixStorage()
        let file = try storage.openFile(directory + "/written", mode: .createExclusive)
        defer { file.close() }
        let bytes = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 5) }
        try file.write(bytes, at: 0)
        file.startWriteback(offset: 0, count: 65_536)
        file.startWriteback(offset: 65_536, count: UInt64(bytes.count) - 65_536)
        file.startWriteback(offset: 1 << 40, count: 4096)
        file.startWriteback(offset: UInt64.max, count: UInt64.max)
        try file.synchronize()
        #expect(try file.size() == UInt64(bytes.count))
        #expect(try file.read(at: 0, count: bytes.count) == bytes)
        file.close()
        file.startWriteback(offset: 0, count: 4096)
    }

    /// A recovery scan reads every segment into one buffer: `PosixStorage` reads into
    /// the storage the buffer already has when it is large enough, and the bytes are
    /// exactly each file's, whatever was in the buffer before.
    @Test func readWholeFileReusesTheBuffersStorage() throws {
        let directory = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let large = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let other = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }
        let small = [UInt8](repeating: 0x42, count: 1_000)
        for (name, bytes) in [("large", large), ("other", other), ("small", small), ("empty", [])] {
            try Data(bytes).write(to: URL(fileURLWithPath: directory + "/" + name))
        }
        let storage = PosixStorage()
        var buffer: [UInt8] = []
        #expect(try storage.readWholeFile(directory + "/large", maxBytes: 1 << 20, into: &buffer))
        #expect(buffer == large)
        let address = buffer.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
        #expect(try storage.readWholeFile(directory + "/other", maxBytes: 1 << 20, into: &buffer))
        #expect(buffer == other)
        #expect(buffer.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) } == address, "read into the same storage")
        #expect(try storage.readWholeFile(directory + "/small", maxBytes: 1 << 20, into: &buffer))
        #expect(buffer == small)
        #expect(try storage.readWholeFile(directory + "/empty", maxBytes: 1 << 20, into: &buffer))
        #expect(buffer.isEmpty)
        // Too large: false, and the buffer is left as it was.
        #expect(try storage.readWholeFile(directory + "/other", maxBytes: 1 << 20, into: &buffer))
        #expect(try storage.readWholeFile(directory + "/large", maxBytes: 1_000, into: &buffer) == false)
        #expect(buffer == other)
        // A copy the caller kept is not written through.
        let kept = buffer
        #expect(try storage.readWholeFile(directory + "/large", maxBytes: 1 << 20, into: &buffer))
        #expect(buffer == large && kept == other)
        #expect(throws: LedgerError.self) { try storage.readWholeFile(directory + "/missing", maxBytes: 1 << 20, into: &buffer) }
    }
}

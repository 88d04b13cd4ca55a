// Proves, on real files, that the writer's exclusion and the ledger's opens cannot be
// tricked by what sits in the directory: deleting or replacing `LOCK` under a live writer
// does not let a second writer in (the lock is on the directory itself; `flock` locks
// belong to an open file description, so two opens in one process conflict as two
// processes do); a `LOCK` that is a symbolic link is refused, and the file it points to
// is left untouched; a FIFO or a symbolic link named like a segment or a snapshot is
// refused with a typed `.notARegularFile` error naming the path, and the open returns
// instead of blocking forever on the FIFO.
import Foundation
import Glibc
import OnceLedgerFormat
import OnceLedgerLog
import Testing

@Suite struct FileSafetyTests {
    private func makeLedger(_ directory: String) async throws {
        let engine = try LogEngine.open(directory: directory, configuration: LogConfiguration(segmentBytes: 8192))
        _ = try await engine.append(kind: .opaque, body: Array("one".utf8))
        try engine.close()
    }

    private func expectError(_ code: LedgerError.Code, _ body: () throws -> Void) -> LedgerError? {
        do {
            try body()
        } catch let error as LedgerError {
            #expect(error.code == code, "\(error)")
            return error
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
        Issue.record("expected a \(code) error, got none")
        return nil
    }

    @Test func deletingLockUnderALiveWriterLetsNoSecondWriterIn() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try LogEngine.open(directory: directory, configuration: LogConfiguration(segmentBytes: 8192))
        let lockPath = directory + "/" + LedgerFileNames.lock
        // What an operator cleaning up "stale lock files" does: rm LOCK…
        try FileManager.default.removeItem(atPath: lockPath)
        let error = expectError(.locked) { _ = try LogEngine.open(directory: directory) }
        #expect(error?.path == directory)
        // The holder is still named: the kernel's /proc/locks knows it without LOCK.
        #expect(error?.holderPID == getpid())
        // …or replace it with a fresh file: the kernel's pid wins over the false text.
        #expect(FileManager.default.createFile(atPath: lockPath, contents: Data("999999\n".utf8)))
        let replaced = expectError(.locked) { _ = try LogEngine.open(directory: directory) }
        #expect(replaced?.holderPID == getpid())
        _ = try await first.append(kind: .opaque, body: Array("still the writer".utf8))
        try first.close()
        // Once the writer has closed, the next open succeeds and writes its pid again.
        let second = try LogEngine.open(directory: directory)
        let text = try String(contentsOfFile: lockPath, encoding: .utf8)
        #expect(text == "\(getpid())\n")
        try second.close()
    }

    @Test func lockFileThatIsASymlinkIsNotFollowed() async throws {
        let directory = temporaryDirectory()
        let outside = temporaryDirectory() + "-victim"
        defer {
            try? FileManager.default.removeItem(atPath: directory)
            try? FileManager.default.removeItem(atPath: outside)
        }
        try await makeLedger(directory)
        let lockPath = directory + "/" + LedgerFileNames.lock
        try FileManager.default.removeItem(atPath: lockPath)
        #expect(FileManager.default.createFile(atPath: outside, contents: Data("precious\n".utf8)))
        #expect(symlink(outside, lockPath) == 0)
        let error = expectError(.notARegularFile) { _ = try LogEngine.open(directory: directory) }
        #expect(error?.path == lockPath)
        #expect(error?.message.contains("symbolic link") == true)
        #expect(try String(contentsOfFile: outside, encoding: .utf8) == "precious\n")
        // A dangling link is not followed to create a file either.
        try FileManager.default.removeItem(atPath: outside)
        _ = expectError(.notARegularFile) { _ = try LogEngine.open(directory: directory) }
        #expect(!FileManager.default.fileExists(atPath: outside))
    }

    @Test(arguments: ["segment", "snapshot"])
    func fifoNamedLikeALedgerFileIsRefusedWithoutBlocking(_ kind: String) async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await makeLedger(directory)
        let name = kind == "segment" ? LedgerFileNames.segment(2) : LedgerFileNames.snapshot(1)
        let path = directory + "/" + name
        #expect(mkfifo(path, 0o644) == 0)
        // Before the fix this open blocked forever in open(2) waiting for a FIFO writer.
        let error = expectError(.notARegularFile) { _ = try LogEngine.open(directory: directory) }
        #expect(error?.path == path)
        #expect(error?.message.contains("is a FIFO, not a regular file") == true)
        // The read-only scan (what verify and stat run) returns the same error.
        _ = expectError(.notARegularFile) { _ = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory) }
    }

    @Test func symlinkNamedLikeASegmentIsRefused() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await makeLedger(directory)
        let path = directory + "/" + LedgerFileNames.segment(2)
        #expect(symlink("/dev/zero", path) == 0)
        let error = expectError(.notARegularFile) { _ = try LogEngine.open(directory: directory) }
        #expect(error?.path == path)
        #expect(error?.errno == ELOOP)
        let storage = PosixStorage()
        _ = expectError(.notARegularFile) { _ = try storage.openFile(path, mode: .readOnly) }
        _ = expectError(.notARegularFile) { _ = try storage.readWholeFile(path, maxBytes: 1 << 20) }
    }
}

// Proves with the built `onceledger` as a real second process that the writer's exclusion
// survives an operator deleting `LOCK`: while this test process holds a ledger open, a
// `stress` run on the same directory fails with "locked", and `verify` and `stat` still see
// the live writer (by the directory's own lock in /proc/locks, made long by 300 other
// locks this test holds) and name its pid. And that a
// FIFO named like a segment makes `verify` and `stat` report a typed error instead of
// blocking forever in open(2). And that `stress` refuses to create a ledger in a directory
// of unrelated files (as the read-only commands call it "not a ledger") unless given
// `--adopt-directory`.
import Foundation
import Glibc
import OnceLedgerFormat
import OnceLedgerLog
import Testing

@Suite struct LockAndFileTypeTests {
    private func directory(_ name: String = #function) -> String {
        let clean = name.filter { $0.isLetter || $0.isNumber }
        return FileManager.default.temporaryDirectory.path + "/onceledger-cli-\(clean)-\(UUID().uuidString.prefix(8))"
    }

    @Test func lockHoldsAgainstAnotherProcessAfterLockFileIsDeleted() async throws {
        let path = directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let engine = try LogEngine.open(directory: path, configuration: LogConfiguration(segmentBytes: 16384))
        _ = try await engine.append(kind: .opaque, body: Array("held".utf8))
        try FileManager.default.removeItem(atPath: path + "/" + LedgerFileNames.lock)

        // Other locks on the host make /proc/locks long (it was read only in part).
        let others = try OtherLocks(count: 300)
        defer { others.release() }

        let stress = try CLI.run(["stress", path, "--effects", "10", "--segment-bytes", "16384"])
        #expect(stress.exitCode == 8, "\(stress.stderr)")
        #expect(stress.stderr.contains("locked"), "\(stress.stderr)")
        #expect(stress.stdout.isEmpty, "no call may be acknowledged by a second writer: \(stress.stdout)")

        for command in ["verify", "stat"] {
            let result = try CLI.run([command, path])
            #expect(result.exitCode == 8, "\(command): \(result.stdout)\(result.stderr)")
            #expect(result.stderr.contains("process \(getpid())"), "\(command): \(result.stderr)")
        }
        try engine.close()
        let after = try CLI.run(["verify", path])
        #expect(after.exitCode == 0, "\(after.stdout)\(after.stderr)")
    }

    @Test func fifoNamedLikeASegmentIsReportedNotWaitedOn() async throws {
        let path = directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let engine = try LogEngine.open(directory: path, configuration: LogConfiguration(segmentBytes: 16384))
        _ = try await engine.append(kind: .opaque, body: Array("one".utf8))
        try engine.close()
        let fifo = path + "/" + LedgerFileNames.segment(2)
        #expect(mkfifo(fifo, 0o644) == 0)
        for command in ["verify", "stat"] {
            // Before the fix each of these blocked forever in open(2) on the FIFO.
            let result = try CLI.run([command, path])
            #expect(result.exitCode != 0, "\(command): \(result.stdout)")
            #expect((result.stdout + result.stderr).contains("is a FIFO, not a regular file"),
                    "\(command): \(result.stdout)\(result.stderr)")
        }
    }

    @Test func stressRefusesADirectoryOfOtherFilesUnlessAdopting() throws {
        let path = directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: path + "/report.pdf", contents: Data("x".utf8)))
        let refused = try CLI.run(["stress", path, "--effects", "5", "--segment-bytes", "16384"])
        #expect(refused.exitCode == 8, "\(refused.stderr)")
        #expect(refused.stderr.contains("not-a-ledger") && refused.stderr.contains("--adopt-directory"), "\(refused.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: path) == ["report.pdf"])
        let adopted = try CLI.run(["stress", path, "--effects", "5", "--segment-bytes", "16384", "--adopt-directory"])
        #expect(adopted.exitCode == 0, "\(adopted.stderr)")
        #expect(FileManager.default.fileExists(atPath: path + "/" + LedgerFileNames.segment(1)))
        #expect(FileManager.default.fileExists(atPath: path + "/report.pdf"))
    }
}

/// `count` files in a temporary directory, each held with `flock(LOCK_EX)`.
private struct OtherLocks {
    let directory: String
    var descriptors: [Int32] = []

    init(count: Int) throws {
        directory = FileManager.default.temporaryDirectory.path + "/onceledger-cli-locks-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for index in 0..<count {
            let fd = open(directory + "/\(index)", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { continue }
            _ = flock(fd, LOCK_EX)
            descriptors.append(fd)
        }
    }

    func release() {
        for fd in descriptors { close(fd) }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

// Proves `PosixFile.writeAndSynchronizeData`, a commit's write: one `pwritev2(RWF_DSYNC)`
// per call where the kernel has it (else `pwrite` + `fdatasync`), through the page cache,
// changing exactly the bytes asked for (checked against a model after seeded appends and
// jumps), growing the file only to offset + count; and that a failed write or sync is a
// typed error naming the file, the caller's offset and the errno. (Kernels without the call:
// `KillTests` inject into `pwrite64`/`fdatasync` there; the engine's torn tails:
// `FaultInjectionTests`.)
import Foundation
import OnceLedgerFormat
@_spi(Testing) @testable import OnceLedgerLog
import OnceLedgerTestSupport
import Testing

@Suite struct SyncedWriteTests {
    /// Runs `body` on a file of `bytes` recognisable bytes (`data` in a fresh
    /// directory), opened for writing, and closes and removes it afterwards.
    static func withFile(_ name: String = #function, bytes: Int,
                         _ body: (_ directory: String, _ file: PosixFile, _ initial: [UInt8]) throws -> Void) throws {
        let directory = temporaryDirectory(name)
        defer { removeDirectory(directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/data"
        var generator = SeededRandom(seed: 7)
        let content = generator.bytes(bytes)
        try writeFile(path, content)
        let file = try #require(try PosixStorage().openFile(path, mode: .readWrite) as? PosixFile)
        defer { file.close() }
        try body(directory, file, content)
    }

    /// A commit's write and its `fdatasync` are one `pwritev2(RWF_DSYNC)` where the kernel
    /// has it, and change exactly the bytes written; where it has not, they are the two calls.
    @Test func writeAndSynchronizeDataIsOneCallThatWritesExactlyTheBytes() throws {
        try Self.withFile(bytes: 100 << 10) { directory, file, initial in
            var model = initial
            var generator = SeededRandom(seed: 11)
            var offset = 0
            for round in 0..<120 {
                // Appends like a segment's commits, and a jump now and then.
                let length = Int.random(in: 1...900, using: &generator)
                if round % 10 == 9 { offset = Int.random(in: 0...(model.count - length), using: &generator) }
                if offset + length > model.count { offset = 0 }
                let bytes = generator.bytes(length)
                try file.writeAndSynchronizeData(bytes, at: UInt64(offset))
                model.replaceSubrange(offset..<(offset + length), with: bytes)
                offset += length
            }
            #expect(try readFile(directory + "/data") == model)
            #expect(try file.size() == UInt64(model.count))
            #expect(file.dataSyncedWrites == (Syscalls.dataSyncWritesEnabled ? 120 : 0))
            #if os(Linux)
            // Linux 4.7 and later; CI and every supported distribution are far past it.
            #expect(Syscalls.dataSyncWritesEnabled, "pwritev2(RWF_DSYNC) was refused")
            #endif
        }
    }

    /// A write reaching past the end grows the file to exactly offset + count (no
    /// rounding to a block), synced or not.
    @Test func aWritePastTheEndGrowsTheFileToExactlyItsEnd() throws {
        try Self.withFile(bytes: 10_000) { directory, file, initial in
            var model = initial
            try file.writeAndSynchronizeData([UInt8](repeating: 0xCD, count: 50), at: 9_990)
            model.replaceSubrange(9_990..<10_000, with: [UInt8](repeating: 0xCD, count: 10))
            model += [UInt8](repeating: 0xCD, count: 40)
            #expect(try file.size() == 10_040)
            try file.write([0xEF], at: 10_040)
            model.append(0xEF)
            #expect(try file.size() == 10_041)
            #expect(try readFile(directory + "/data") == model)
        }
    }

    /// A failed write, and a failed sync of a synced write, name the file, the caller's
    /// offset and the errno; the file is otherwise unchanged by a failed write.
    @Test(arguments: [(FaultInjection.Call.write, EIO), (.write, ENOSPC), (.fdatasync, EIO)])
    func aFailedSyncedWriteNamesTheFileOffsetAndErrno(call: FaultInjection.Call, errno: Int32) throws {
        try Self.withFile("\(call)-\(errno)", bytes: 64 << 10) { directory, file, initial in
            try file.writeAndSynchronizeData([7, 7], at: 5_000)
            let token = FaultInjection.install(.init(pathPrefix: directory, call: call, errno: errno))
            let error = #expect(throws: LedgerError.self) { try file.writeAndSynchronizeData([8, 8, 8], at: 5_002) }
            FaultInjection.remove(token)
            #expect(error?.code == .io)
            #expect(error?.errno == errno)
            #expect(error?.offset == 5_002 || call == .fdatasync && !Syscalls.dataSyncWritesEnabled)
            #expect(error?.path == directory + "/data")
            #expect(error?.message.contains(call == .write ? "write" : "fdatasync") == true, "\(String(describing: error))")
            var model = initial
            model[5_000] = 7
            model[5_001] = 7
            if call == .fdatasync { model.replaceSubrange(5_002..<5_005, with: [8, 8, 8]) }
            #expect(try readFile(directory + "/data") == model)
        }
    }
}

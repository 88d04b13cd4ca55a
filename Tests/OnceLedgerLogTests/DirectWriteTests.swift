// Proves `PosixStorage`'s direct writes (`DirectWrites`: small writes sent with
// O_DIRECT in whole 4 KiB blocks, the bytes around them taken from a cached window)
// change exactly the bytes asked for and nothing else: at any offset and length,
// across blocks and window refills, next to writes through the page cache; that
// they never round a file's size up; that short and failing direct writes behave
// like buffered ones (continued on block boundaries; a typed error naming the
// caller's offset; through the engine, a torn tail recovery accepts:
// `FaultInjectionTests.partialWriteThenEIOLeavesARecoverableTail`). Where the file system refuses
// O_DIRECT, every write must be declined and done through the page cache instead.
import Foundation
import OnceLedgerFormat
@testable import OnceLedgerLog
import OnceLedgerTestSupport
import Testing

@Suite struct DirectWriteTests {
    /// Whether the temporary directory's file system takes O_DIRECT at all (tmpfs
    /// before Linux 6.6 does not): the expectations differ, the bytes may not.
    static let directSupported: Bool = {
        let directory = temporaryDirectory("probe")
        defer { removeDirectory(directory) }
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/probe"
        guard (try? writeFile(path, [UInt8](repeating: 0, count: 8192))) != nil,
              let file = try? PosixStorage().openFile(path, mode: .readWrite) as? PosixFile
        else { return false }
        defer { file.close() }
        guard (try? file.write([1], at: 5)) != nil else { return false }
        return file.directWriteCounts.direct == 1
    }()

    /// Runs `body` on a file of `bytes` recognisable bytes (`data` in a fresh
    /// directory), opened for writing, and closes and removes it afterwards.
    static func withFile(_ name: String = #function, bytes: Int, directWrites: Bool = true,
                         _ body: (_ directory: String, _ file: PosixFile, _ initial: [UInt8]) throws -> Void) throws {
        let directory = temporaryDirectory(name)
        defer { removeDirectory(directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/data"
        var generator = SeededRandom(seed: 7)
        let content = generator.bytes(bytes)
        try writeFile(path, content)
        let file = try #require(try PosixStorage(directWrites: directWrites).openFile(path, mode: .readWrite) as? PosixFile)
        defer { file.close() }
        try body(directory, file, content)
    }

    @Test func directWritesChangeExactlyTheBytesWritten() throws {
        try Self.withFile(bytes: 300 << 10) { directory, file, initial in
            var model = initial
            var generator = SeededRandom(seed: 42)
            var writes = 0
            for round in 0..<400 {
                // Mostly appends a few hundred bytes apart, like a segment's commits; also
                // jumps (window refills), block-straddling writes and the largest allowed.
                let length: Int
                let offset: Int
                switch round % 8 {
                case 0: length = Int.random(in: 1...DirectWrites.largestWrite, using: &generator)
                case 1: length = Int.random(in: 1...16, using: &generator)
                default: length = Int.random(in: 40...700, using: &generator)
                }
                if round % 5 == 0 {
                    offset = Int.random(in: 0...(model.count - length), using: &generator)
                } else {
                    offset = (writes * 997) % (model.count - length)
                }
                let bytes = generator.bytes(length)
                try file.write(bytes, at: UInt64(offset))
                model.replaceSubrange(offset..<(offset + length), with: bytes)
                writes += 1
                if round % 50 == 49 {
                    #expect(try file.read(at: 0, count: model.count) == model, "after write \(writes)")
                }
            }
            try file.synchronizeData()
            #expect(try file.size() == UInt64(initial.count), "a direct write never changes the size")
            #expect(try readFile(directory + "/data") == model)
            let counts = file.directWriteCounts
            if Self.directSupported {
                #expect(counts.direct == writes && counts.declined == 0, "\(counts)")
            } else {
                #expect(counts.direct == 0 && counts.declined == writes, "\(counts)")
            }
        }
    }

    /// A commit's write and its `fdatasync` are one `pwritev2(RWF_DSYNC)` where the kernel
    /// has it, direct or through the page cache, and change exactly the bytes written;
    /// where it has not, they are the two calls.
    @Test(arguments: [true, false]) func writeAndSynchronizeDataIsOneCallThatWritesExactlyTheBytes(direct: Bool) throws {
        try Self.withFile("dsync-\(direct)", bytes: 100 << 10, directWrites: direct) { directory, file, initial in
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
            if direct && Self.directSupported { #expect(file.directWriteCounts == (120, 0)) }
        }
    }

    @Test func writesPastTheLastWholeBlockGoThroughThePageCache() throws {
        try Self.withFile(bytes: 10_000) { directory, file, initial in
            var model = initial
            // In the partial last block: a whole-block write would round the size up.
            try file.write([UInt8](repeating: 0xAB, count: 100), at: 9_000)
            model.replaceSubrange(9_000..<9_100, with: [UInt8](repeating: 0xAB, count: 100))
            #expect(try file.size() == 10_000)
            // Past the end: the file grows to exactly offset + count.
            try file.write([UInt8](repeating: 0xCD, count: 50), at: 9_990)
            model.replaceSubrange(9_990..<10_000, with: [UInt8](repeating: 0xCD, count: 10))
            model += [UInt8](repeating: 0xCD, count: 40)
            #expect(try file.size() == 10_040)
            // Back inside the whole blocks, after the buffered writes: the window was
            // dropped, so the bytes they wrote are not overwritten with stale ones.
            try file.write([UInt8](repeating: 0xEF, count: 10), at: 8_100)
            model.replaceSubrange(8_100..<8_110, with: [UInt8](repeating: 0xEF, count: 10))
            try file.write([UInt8](repeating: 0x11, count: 3), at: 4_095)
            model.replaceSubrange(4_095..<4_098, with: [UInt8](repeating: 0x11, count: 3))
            #expect(try readFile(directory + "/data") == model)
            let counts = file.directWriteCounts
            #expect(counts.declined >= 2, "\(counts)")
            #expect(counts.direct == (Self.directSupported ? 2 : 0), "\(counts)")
        }
    }

    @Test func aTruncateDropsTheWindow() throws {
        try Self.withFile(bytes: 64 << 10) { directory, file, _ in
            try file.write([1, 2, 3], at: 100)
            try file.truncate(to: 0)
            try file.truncate(to: 64 << 10)
            // The window held the old bytes of block 0; the file's are now zeros.
            try file.write([9], at: 200)
            var expected = [UInt8](repeating: 0, count: 64 << 10)
            expected[200] = 9
            #expect(try readFile(directory + "/data") == expected)
        }
    }

    @Test func shortDirectWritesAreContinuedOnBlockBoundaries() throws {
        try Self.withFile(bytes: 64 << 10) { directory, file, initial in
            let token = FaultInjection.install(.init(
                pathPrefix: directory, call: .write, errno: FaultInjection.shortWrite, count: 1_000))
            defer { FaultInjection.remove(token) }
            // Six blocks, [0, 24 KiB): cut to 12 KiB, then 4 KiB, ...; an unaligned
            // continuation would fail with EINVAL and be declined instead.
            let bytes = [UInt8](repeating: 0x5A, count: 20_000)
            try file.write(bytes, at: 1_000)
            var model = initial
            model.replaceSubrange(1_000..<21_000, with: bytes)
            #expect(try readFile(directory + "/data") == model)
            #expect(FaultInjection.fired(token) >= 2)
            if Self.directSupported {
                #expect(file.directWriteCounts == (1, 0))
            }
        }
    }

    @Test(arguments: [EIO, ENOSPC])
    func aFailedDirectWriteNamesTheCallersOffset(errno: Int32) throws {
        try Self.withFile(bytes: 64 << 10) { directory, file, initial in
            try file.write([7, 7], at: 5_000)
            let token = FaultInjection.install(.init(pathPrefix: directory, call: .write, errno: errno))
            let error = #expect(throws: LedgerError.self) { try file.write([8, 8, 8], at: 5_002) }
            FaultInjection.remove(token)
            #expect(error?.code == .io)
            #expect(error?.errno == errno)
            #expect(error?.offset == 5_002)
            #expect(error?.path == directory + "/data")
            // The window is refilled from the file, not trusted after a failure.
            try file.write([9], at: 5_010)
            var model = initial
            model[5_000] = 7
            model[5_001] = 7
            model[5_010] = 9
            #expect(try readFile(directory + "/data") == model)
        }
    }

    /// The second descriptor is an optimization: a file system without O_DIRECT
    /// (EINVAL) or running out of descriptors declines (the write goes through the
    /// page cache); an I/O error opening it is the file's.
    @Test(arguments: [(EINVAL, true), (EMFILE, true), (ENFILE, true), (EIO, false)])
    func aFailedDirectOpen(errno: Int32, declines: Bool) throws {
        try Self.withFile("open\(errno)", bytes: 64 << 10) { directory, file, initial in
            let token = FaultInjection.install(.init(pathPrefix: directory, call: .open, errno: errno))
            defer { FaultInjection.remove(token) }
            var model = initial
            if declines {
                try file.write([4, 4], at: 300)
                model[300] = 4
                model[301] = 4
                #expect(file.directWriteCounts == (0, 1))
                #expect(try readFile(directory + "/data") == model)
            } else {
                let error = #expect(throws: LedgerError.self) { try file.write([4, 4], at: 300) }
                #expect(error?.code == .io)
                #expect(error?.errno == errno)
                #expect(error?.path == directory + "/data")
                #expect(try readFile(directory + "/data") == model, "nothing was written")
            }
            #expect(FaultInjection.fired(token) == 1)
        }
    }

    /// The direct descriptor is opened by name; once the name leads elsewhere (the
    /// file was renamed, another took its place) writes go through the file's own
    /// descriptor instead, never into the other file.
    @Test func aRenamedFileIsNeverWrittenThroughItsOldName() throws {
        try Self.withFile(bytes: 64 << 10) { directory, file, initial in
            try FileManager.default.moveItem(atPath: directory + "/data", toPath: directory + "/moved")
            let impostor = [UInt8](repeating: 0xEE, count: 64 << 10)
            try writeFile(directory + "/data", impostor)
            try file.write([1, 2, 3], at: 5_000)
            var model = initial
            model.replaceSubrange(5_000..<5_003, with: [1, 2, 3])
            #expect(try readFile(directory + "/moved") == model)
            #expect(try readFile(directory + "/data") == impostor)
            #expect(file.directWriteCounts == (0, 1))
            try FileManager.default.removeItem(atPath: directory + "/data")
            try file.write([4], at: 6_000)
            model[6_000] = 4
            #expect(try readFile(directory + "/moved") == model)
        }
    }

    /// A file system that opens with O_DIRECT but refuses the writes (EINVAL): the
    /// write is done through the page cache, and so is every later one.
    @Test func aFileSystemRefusingDirectWritesGetsBufferedOnes() throws {
        try Self.withFile(bytes: 64 << 10) { directory, file, initial in
            // Where O_DIRECT is not there at all, the open already declined: nothing to refuse.
            let token = Self.directSupported
                ? FaultInjection.install(.init(pathPrefix: directory, call: .write, errno: EINVAL)) : nil
            defer { token.map(FaultInjection.remove) }
            try file.write([5, 5, 5], at: 700)
            try file.write([6], at: 9_000)
            var model = initial
            model.replaceSubrange(700..<703, with: [5, 5, 5])
            model[9_000] = 6
            #expect(try readFile(directory + "/data") == model)
            if let token { #expect(FaultInjection.fired(token) == 1, "only the first direct write was tried") }
            #expect(file.directWriteCounts == (0, 2))
        }
    }
}

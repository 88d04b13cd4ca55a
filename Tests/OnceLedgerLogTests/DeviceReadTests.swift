// Proves `PosixStorage.readFromDevice`, the read past the page cache (`O_DIRECT`) that a
// writer's open compares its last segment's unvouched records with (`Spec/RECOVERY.md`
// §4.1): it gives the file's bytes at any offset and count (its requests are 4 KiB-aligned
// inside), fewer only at the end of the file, bytes written but not synced included (the
// kernel writes dirty pages back before a direct read); a missing file and an injected
// read error are typed errors. Where the file system refuses direct I/O it is nil, and only
// tmpfs may. Losing pages after a failed fsync is not something a test can make a real
// disk do; `SimulatedStorage` models it (`CrashTests.reopenAfterAFailedSyncWithLostPages`).
import Foundation
import Glibc
import OnceLedgerFormat
@_spi(Testing) @testable import OnceLedgerLog
import OnceLedgerTestSupport
import Testing

@Suite struct DeviceReadTests {
    /// The type of the file system `path` is on, from `/proc/self/mounts` (the longest
    /// mount point that is a prefix of it).
    static func fileSystemType(of path: String) throws -> String {
        let mounts = try String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)
        var best = (point: "", type: "?")
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            let point = String(fields[1])
            let inside = point == "/" || path == point || path.hasPrefix(point + "/")
            if inside && point.count >= best.point.count { best = (point, String(fields[2])) }
        }
        return best.type
    }

    @Test func readFromDeviceGivesTheFilesBytesAtAnyOffset() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/data"
        var generator = SeededRandom(seed: 23)
        let content = generator.bytes(20_000)
        try writeFile(path, content)
        let storage = PosixStorage()
        guard let whole = try storage.readFromDevice(path, at: 0, count: content.count) else {
            let type = try Self.fileSystemType(of: path)
            #expect(type == "tmpfs", "direct reads were refused on \(type), which is not tmpfs")
            return
        }
        #expect(whole == content)
        let cases: [(offset: Int, count: Int)] = [
            (0, 1), (1, 10), (4095, 2), (4096, 4096), (5000, 9000), (12_287, 4099), (19_990, 100), (20_000, 5),
            (30_000, 5), (7, 0),
        ]
        for (offset, count) in cases {
            let expected = Array(content[min(offset, content.count)..<min(content.count, offset + count)])
            let read = try storage.readFromDevice(path, at: UInt64(offset), count: count)
            #expect(read == expected, "offset \(offset) count \(count)")
        }
        // Written, not synced: the kernel writes the dirty page back before reading the device.
        let file = try storage.openFile(path, mode: .readWrite)
        defer { file.close() }
        let fresh = [UInt8](repeating: 0xAB, count: 300)
        try file.write(fresh, at: 7000)
        #expect(try storage.readFromDevice(path, at: 6990, count: 320) == Array(content[6990..<7000]) + fresh + Array(content[7300..<7310]))
    }

    @Test func aMissingFileOrAFailedReadIsATypedError() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let storage = PosixStorage()
        #expect {
            _ = try storage.readFromDevice(directory + "/missing", at: 0, count: 10)
        } throws: { error in
            (error as? LedgerError)?.code == .io && (error as? LedgerError)?.errno == ENOENT
        }
        let path = directory + "/data"
        try writeFile(path, [UInt8](repeating: 1, count: 5000))
        guard try storage.readFromDevice(path, at: 0, count: 1) != nil else { return }  // tmpfs: the test above says so
        let token = FaultInjection.install(.init(pathPrefix: directory, call: .read, errno: EIO, count: 1))
        defer { FaultInjection.remove(token) }
        #expect {
            _ = try storage.readFromDevice(path, at: 100, count: 10)
        } throws: { error in
            let typed = error as? LedgerError
            return typed?.code == .io && typed?.errno == EIO && typed?.path == path && typed?.offset == 100
        }
    }

    /// The simulated storage's device read follows its model: a failed sync's lost pages read
    /// as the disk's bytes, until a later write dirties them again; dirty pages read as written.
    @Test func simulatedDeviceReadShowsLostPagesAsTheDiskHasThem() throws {
        var options = SimulatedStorage.Options()
        options.failedSyncLosesWrites = true
        let storage = SimulatedStorage(seed: 5, options: options)
        try storage.createDirectory("/d")
        let file = try storage.openFile("/d/a", mode: .createExclusive)
        try file.write([UInt8](repeating: 1, count: 10_000), at: 0)
        try file.synchronizeData()
        try file.write([UInt8](repeating: 2, count: 100), at: 5000)
        #expect(try storage.readFromDevice("/d/a", at: 4990, count: 120)
            == [UInt8](repeating: 1, count: 10) + [UInt8](repeating: 2, count: 100) + [UInt8](repeating: 1, count: 10))
        storage.injectFault(.fileSync, errno: EIO)
        #expect(throws: LedgerError.self) { try file.synchronizeData() }
        // The cache still shows the lost write; the device does not have it.
        #expect(try file.read(at: 5000, count: 100) == [UInt8](repeating: 2, count: 100))
        #expect(try storage.readFromDevice("/d/a", at: 5000, count: 100) == [UInt8](repeating: 1, count: 100))
        // A later write to the page dirties it again: written back whole, lost bytes included.
        try file.write([3], at: 4100)
        #expect(try storage.readFromDevice("/d/a", at: 5000, count: 100) == [UInt8](repeating: 2, count: 100))
        #expect(try storage.readFromDevice("/d/a", at: 9990, count: 100) == [UInt8](repeating: 1, count: 10))
    }
}

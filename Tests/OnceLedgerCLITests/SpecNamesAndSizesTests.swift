// Proves two places where the tool was made to follow Spec/ exactly (after an independent
// reader of the Spec found it did not): (1) only names of FORMAT §2.1's exact grammar are torn
// side files (`torn-<16 hex>-<16 hex>.bin`, `…-<n>.bin`) or the ledger's temporary files, so
// `verify --repair` (which deletes temporary files as an open does) leaves `torn-x.bin.tmp` and
// every other near miss alone; (2) a segment file larger than the largest valid segment is
// row R7 with offset = the file size, like every R7 (RECOVERY §6). Each test builds the
// directory from a copy of a golden ledger, runs the built executable and checks its JSON
// report and the files left; the oversized file is sparse (truncate), so it takes no disk space.
import Foundation
import Testing

@Suite struct SpecNamesAndSizesTests {
    private static let vectors = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Spec/vectors").path

    private static func cleanCopy(_ label: String) throws -> KillTestDirectory {
        let parent = try KillTestDirectory(label)
        try FileManager.default.removeItem(atPath: parent.path)
        try FileManager.default.copyItem(atPath: vectors + "/ledger-clean", toPath: parent.path)
        return parent
    }

    private static func report(_ result: CLI.Result) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    }

    @Test func onlyExactTornAndTemporaryNamesAreTheLedgers() throws {
        let directory = try Self.cleanCopy("names")
        defer { directory.remove() }
        let ours = [
            "torn-0000000000000001-0000000000000100.bin", "torn-0000000000000001-0000000000000100-2.bin",
            "torn-0000000000000001-0000000000000100-10.bin",
        ]
        let oursTemporary = ["torn-0000000000000001-0000000000000100.bin.tmp", "torn-0000000000000001-0000000000000100-1.bin.tmp",
                             "wal-0000000000000002.seg.tmp", "snap-0000000000000005.snap.tmp"]
        let strangers = [
            "torn-x.bin", "torn-x.bin.tmp", "torn-0.bin.tmp", "torn-0000000000000001-0000000000000100-0.bin",
            "torn-0000000000000001-0000000000000100-01.bin.tmp", "torn-0000000000000001-0000000000000100-x.bin",
            "torn-0000000000000001-0000000000000100-.bin", "torn-000000000000000A-0000000000000100.bin.tmp",
            "torn-0000000000000001-000000000000100.bin", "torn-0000000000000001_0000000000000100.bin",
            "torn-0000000000000001-0000000000000100-1.bin.bak", "notes.tmp",
        ]
        for name in ours + oursTemporary + strangers {
            #expect(FileManager.default.createFile(atPath: directory.path + "/" + name, contents: Data(name.utf8)))
        }
        let verify = try CLI.run(["verify", directory.path, "--json"])
        #expect(verify.exitCode == 0, "\(verify.stdout)\(verify.stderr)")
        let report = try Self.report(verify)
        #expect((report["tornFiles"] as? [String]) == ours.sorted())
        #expect((report["temporaryFiles"] as? [String]) == oursTemporary.sorted())
        #expect((report["otherFiles"] as? [String]) == strangers.sorted())

        let repair = try CLI.run(["verify", directory.path, "--repair", "--json"])
        #expect(repair.exitCode == 1, "\(repair.stdout)\(repair.stderr)")
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: directory.path))
        #expect(left.isDisjoint(with: oursTemporary), "the ledger's temporary files are deleted")
        #expect(left.isSuperset(of: ours + strangers), "torn side files and names that are not the ledger's are left alone")
    }

    @Test func aSegmentLargerThanTheLargestValidOneIsR7AtItsSize() throws {
        let directory = try Self.cleanCopy("oversized")
        defer { directory.remove() }
        let size: UInt64 = 4 << 30 + 8
        #expect(truncate(directory.path + "/wal-0000000000000001.seg", off_t(size)) == 0)
        let verify = try CLI.run(["verify", directory.path, "--json"])
        #expect(verify.exitCode == 4)
        let report = try Self.report(verify)
        #expect((report["recovery"] as? [String: Any])?["row"] as? String == "R7 truncated-segment")
        let problem = try #require((report["problems"] as? [[String: Any]])?.first)
        #expect(problem["code"] as? String == "corrupt-segment-header")
        #expect(problem["segment"] as? Int == 1)
        #expect((problem["offset"] as? NSNumber)?.uint64Value == size)
        #expect(problem["message"] as? String
                == "segment file is 4294967304 bytes, larger than the largest valid segment (4294967296 bytes); run `onceledger salvage`")
    }
}

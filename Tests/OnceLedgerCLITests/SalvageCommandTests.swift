// Proves `onceledger salvage` copies what is recoverable and reports what is lost: it runs on
// the golden ledgers of Spec/vectors (clean, torn, corrupt in a sealed segment, corrupt and
// acknowledged, compacted, newest segment deleted, interrupted rollover) and on damaged copies
// (a missing segment, a damaged snapshot), and compares the whole report and exit code (paths
// replaced by DIR and NEW); then opens the new
// ledger with the library and checks each key's state, checks `verify` calls it clean, and
// checks DIR's bytes did not change. Also the refusals: NEWDIR not empty, NEWDIR inside DIR.
import Foundation
import OnceLedger
import OnceLedgerFormat
import Testing

@Suite struct SalvageCommandTests {
    static let vectors = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Spec/vectors").path

    /// Runs salvage from `source` into a fresh directory; returns the report with paths
    /// replaced, the exit code, and the new ledger's entries by key.
    static func salvage(_ source: String, _ extra: [String] = []) throws
        -> (report: String, exitCode: Int32, entries: [String: EntryInfo.Status], target: KillTestDirectory)
    {
        let target = try KillTestDirectory("salvage-new")
        let before = files(source)
        let result = try CLI.run(["salvage", source, "--to", target.path] + extra)
        #expect(files(source) == before, "salvage changed \(source)")
        #expect(result.stderr.isEmpty, "stderr: \(result.stderr)")
        let report = result.stdout.replacingOccurrences(of: target.path, with: "NEW")
            .replacingOccurrences(of: source, with: "DIR")
        var entries: [String: EntryInfo.Status] = [:]
        if result.exitCode == 0 || result.exitCode == 4 {
            let store = try FileStore(directory: target.path, createIfMissing: false)
            for entry in try store.currentEntries() { entries[entry.key] = entry.status }
            try store.close()
            let verify = try CLI.run(["verify", target.path])
            #expect(verify.exitCode == 0, "verify of the salvaged ledger: \(verify.stdout)")
        }
        return (report, result.exitCode, entries, target)
    }

    /// Each file's bytes; for a file over 64 MiB (a sparse one), its size and modification
    /// time instead, so that the check does not read gigabytes of holes.
    static func files(_ directory: String) -> [String: Data] {
        var contents: [String: Data] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            let path = directory + "/" + name
            var info = stat()
            if stat(path, &info) == 0, info.st_size > 64 << 20 {
                contents[name] = Data("size \(info.st_size) modified \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)".utf8)
            } else {
                contents[name] = FileManager.default.contents(atPath: path)
            }
        }
        return contents
    }

    /// A writable copy of a vector ledger.
    static func copy(_ vector: String) throws -> KillTestDirectory {
        let directory = try KillTestDirectory("salvage-src")
        for name in try FileManager.default.contentsOfDirectory(atPath: vectors + "/" + vector) {
            try FileManager.default.copyItem(atPath: vectors + "/" + vector + "/" + name, toPath: directory.path + "/" + name)
        }
        return directory
    }

    @Test func cleanLedgerLosesNothing() throws {
        let run = try Self.salvage(Self.vectors + "/ledger-clean")
        defer { run.target.remove() }
        #expect(run.exitCode == 0)
        #expect(run.report == """
            salvage DIR -> NEW
            source: ledger 000102030405060708090a0b0c0d0e0f, 1 segment file
              wal-0000000000000001.seg: 5 valid records in sequence 1-5
            written: NEW
              0 snapshot items and 4 records copied; 1 housekeeping record (checkpoint, snapshot marker, seal) left out: they only describe the old files
              the new ledger keeps the source's ledger id and token scheme (every entry keeps its effect token) and numbers its records afresh (sequence numbers differ from the source's)
              entries: 1 done, 1 pending-unknown, 0 absent
            result: nothing lost

            """)
        #expect(run.entries == ["order-42-receipt": .done, "order-43": .pendingUnknown])
    }

    @Test func tornTailIsReportedButNotLost() throws {
        let run = try Self.salvage(Self.vectors + "/ledger-torn")
        defer { run.target.remove() }
        #expect(run.exitCode == 0)
        #expect(run.report == """
            salvage DIR -> NEW
            source: ledger 000102030405060708090a0b0c0d0e0f, 1 segment file
              wal-0000000000000001.seg: 4 valid records in sequence 1-5
            damaged bytes (not valid records):
              segment 1 (wal-0000000000000001.seg) offsets 256..<360: checksum mismatch: stored 0x67c4382c, computed 0x037df0dc; looks like intent of "order-43" (sequence 3), unverified
            torn tail (not counted as lost: never proven durable):
              sequence 3 (segment 1, between offsets 256 and 360): nothing proves this was durable: an unsynced tail a crash may leave torn (normal recovery discards it too)
            written: NEW
              0 snapshot items and 4 records copied
              the new ledger keeps the source's ledger id and token scheme (every entry keeps its effect token) and numbers its records afresh (sequence numbers differ from the source's)
              entries: 1 done, 0 pending-unknown, 1 absent
            result: nothing acknowledged was lost (damage only in bytes nothing proves durable)

            """)
        // Records 4 and 5 (memo, release of order-43) are past the torn record and copied.
        #expect(run.entries == ["order-42-receipt": .done, "order-43": .absent])
    }

    @Test func corruptionInSealedSegmentIsLost() throws {
        let run = try Self.salvage(Self.vectors + "/ledger-sealed-corrupt")
        defer { run.target.remove() }
        #expect(run.exitCode == 4)
        #expect(run.report == """
            salvage DIR -> NEW
            source: ledger 000102030405060708090a0b0c0d0e0f, 2 segment files
              wal-0000000000000001.seg: 3 valid records in sequence 1-4
              wal-0000000000000002.seg: 3 valid records in sequence 5-7
            damaged bytes (not valid records):
              segment 1 (wal-0000000000000001.seg) offsets 176..<256: checksum mismatch: stored 0xd113b4ce, computed 0xf544dcc3; looks like completion of "krder-42-receipt" (sequence 2), unverified
            LOST: records proven durable that could not be read:
              sequence 2 (segment 1, between offsets 176 and 256): a later record says sequence 6 was durable; a later segment exists (this one was sealed)
            written: NEW
              0 snapshot items and 4 records copied; 2 housekeeping records (checkpoint, snapshot marker, seal) left out: they only describe the old files
              the new ledger keeps the source's ledger id and token scheme (every entry keeps its effect token) and numbers its records afresh (sequence numbers differ from the source's)
              entries: 1 done, 1 pending-unknown, 0 absent
            result: something was lost (1 durable record lost); check the entries above against the systems the effects touched

            """)
        // The lost completion leaves its key pending-unknown: never silently done or absent.
        #expect(run.entries == ["order-42-receipt": .pendingUnknown, "order-43": .done])
    }

    @Test func acknowledgedCorruptRecordIsLost() throws {
        let run = try Self.salvage(Self.vectors + "/ledger-acked-corrupt")
        defer { run.target.remove() }
        #expect(run.exitCode == 4)
        #expect(run.report.contains("LOST: records proven durable that could not be read:\n  sequence 3 (segment 1, between offsets 256 and 360): a later record says sequence 4 was durable\n"))
        #expect(run.entries == ["order-42-receipt": .done, "order-43": .absent])
    }

    @Test func compactedLedgerCopiesSnapshotAndRecords() throws {
        let run = try Self.salvage(Self.vectors + "/ledger-compacted")
        defer { run.target.remove() }
        #expect(run.exitCode == 0)
        #expect(run.report == """
            salvage DIR -> NEW
            source: ledger 000102030405060708090a0b0c0d0e0f, 1 segment file, snapshot snap-0000000000000007.snap (covers 1-7, 3 items)
              wal-0000000000000002.seg: 4 valid records in sequence 7-10
              1 valid record at or below the snapshot's sequence number: already reflected in the snapshot
            written: NEW
              3 snapshot items and 1 record copied; 2 housekeeping records (checkpoint, snapshot marker, seal) left out: they only describe the old files
              the new ledger keeps the source's ledger id and token scheme (every entry keeps its effect token) and numbers its records afresh (sequence numbers differ from the source's)
              entries: 2 done, 1 pending-unknown, 0 absent
            result: nothing lost

            """)
        #expect(run.entries == ["order-42-receipt": .done, "order-43": .done, "order-44": .pendingUnknown])
    }

    @Test func damagedSnapshotIsUsedOnlyWhenTrusted() throws {
        let source = try Self.copy("ledger-compacted")
        defer { source.remove() }
        // Flip a byte inside the first item's key: the file checksum fails.
        let snapshot = source.path + "/snap-0000000000000007.snap"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: snapshot))
        bytes[74] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: snapshot))

        let plain = try Self.salvage(source.path)
        defer { plain.target.remove() }
        #expect(plain.exitCode == 4)
        #expect(plain.report.contains("snap-0000000000000007.snap is damaged; 3 of its 3 items still parse: rerun with --trust-damaged-snapshot to copy them, unverified"))
        #expect(plain.report.contains("LOST: records proven durable that could not be read:\n  sequences 1-6 (before segment 2 offset 64; compacted into a snapshot that is missing or invalid)"))
        #expect(plain.entries == ["order-43": .done, "order-44": .pendingUnknown])

        let trusted = try Self.salvage(source.path, ["--trust-damaged-snapshot"])
        defer { trusted.target.remove() }
        #expect(trusted.exitCode == 4)
        #expect(trusted.report.contains("UNVERIFIED: snap-0000000000000007.snap is damaged; 3 of its 3 items still parse; they are used as the state through sequence 7, without checksum verification"))
        #expect(trusted.report.contains("result: something was lost (snapshot items unverified)"))
        #expect(trusted.entries.count == 3)
        #expect(trusted.entries["order-43"] == .done && trusted.entries["order-44"] == .pendingUnknown)
    }

    /// RECOVERY R16: the last segment's seal names a segment that is gone (a loss of unknown
    /// size); R17: only its temporary file is there (an interrupted rollover: nothing lost).
    @Test func deletedNewestSegmentIsLostButAnInterruptedRolloverIsNot() throws {
        let deleted = try Self.salvage(Self.vectors + "/ledger-newest-deleted")
        defer { deleted.target.remove() }
        #expect(deleted.exitCode == 4)
        #expect(deleted.report == """
            salvage DIR -> NEW
            source: ledger 000102030405060708090a0b0c0d0e0f, 1 segment file
              wal-0000000000000001.seg: 4 valid records in sequence 1-4
            LOST, how many records unknown: a segment that is missing, with no later segment or record to count what it held:
              segment 2 (wal-0000000000000002.seg): missing: segment 1 ends with a seal naming it, so it was created and may have held acknowledged records (deleted, or lost with the file system); any segment after it is gone too
            written: NEW
              0 snapshot items and 3 records copied; 1 housekeeping record (checkpoint, snapshot marker, seal) left out: they only describe the old files
              the new ledger keeps the source's ledger id and token scheme (every entry keeps its effect token) and numbers its records afresh (sequence numbers differ from the source's)
              entries: 1 done, 0 pending-unknown, 0 absent
            result: something was lost (an unknown number of records lost in segment 2); check the entries above against the systems the effects touched

            """)
        #expect(deleted.entries == ["order-42-receipt": .done])

        let json = try KillTestDirectory("salvage-json")
        defer { json.remove() }
        let result = try CLI.run(["salvage", Self.vectors + "/ledger-newest-deleted", "--to", json.path, "--json"])
        #expect(result.exitCode == 4)
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        #expect(object?["unknownLossSegments"] as? [Int] == [2])
        #expect(object?["missingSuccessor"] as? Int == 2)
        #expect(object?["interruptedRollover"] as? Bool == false)
        #expect(object?["somethingLost"] as? Bool == true)

        let interrupted = try Self.salvage(Self.vectors + "/ledger-interrupted-rollover")
        defer { interrupted.target.remove() }
        #expect(interrupted.exitCode == 0)
        #expect(interrupted.report == """
            salvage DIR -> NEW
            source: ledger 000102030405060708090a0b0c0d0e0f, 1 segment file
              wal-0000000000000001.seg: 4 valid records in sequence 1-4
              wal-0000000000000002.seg.tmp: an interrupted rollover: segment 1 is sealed and names segment 2, whose file was being created; no record was written to it (nothing lost)
            written: NEW
              0 snapshot items and 3 records copied; 1 housekeeping record (checkpoint, snapshot marker, seal) left out: they only describe the old files
              the new ledger keeps the source's ledger id and token scheme (every entry keeps its effect token) and numbers its records afresh (sequence numbers differ from the source's)
              entries: 1 done, 0 pending-unknown, 0 absent
            result: nothing lost

            """)
        #expect(interrupted.entries == ["order-42-receipt": .done])
    }

    @Test func missingSegmentIsNamed() throws {
        let source = try KillTestDirectory("salvage-gap")
        defer { source.remove() }
        let stress = try CLI.run(["stress", source.path, "--effects", "200", "--concurrency", "2", "--seed", "11",
                                  "--segment-bytes", "4096", "--fail-percent", "0"])
        #expect(stress.exitCode == 0, "\(stress.stderr)")
        try FileManager.default.removeItem(atPath: source.path + "/" + LedgerFileNames.segment(3))
        let run = try Self.salvage(source.path)
        defer { run.target.remove() }
        #expect(run.exitCode == 4)
        #expect(run.report.contains("  missing segment files: 3\n"))
        #expect(run.report.contains("; segment file 3 missing): a later record says sequence"))
    }

    @Test func refusesNonEmptyTargetAndTargetInsideSource() throws {
        let target = try KillTestDirectory("salvage-busy")
        defer { target.remove() }
        #expect(FileManager.default.createFile(atPath: target.path + "/keep", contents: Data("x".utf8)))
        let busy = try CLI.run(["salvage", Self.vectors + "/ledger-clean", "--to", target.path])
        #expect(busy.exitCode == 8)
        #expect(busy.stderr == "Error: \(target.path) is not empty; salvage writes only into a new or empty directory\n")
        #expect(Self.files(target.path).keys.sorted() == ["keep"])

        let inside = try CLI.run(["salvage", Self.vectors + "/ledger-clean", "--to", Self.vectors + "/ledger-clean/new"])
        #expect(inside.exitCode == 16)
        #expect(inside.stderr.hasPrefix("Error: --to must not be inside DIR (salvage never changes DIR)"))
    }

    /// A live writer is seen by its lock on the directory, also after `LOCK` was deleted
    /// (an operator removing a "stale lock file"): salvage refuses, naming the holder,
    /// and creates nothing.
    @Test func refusesALedgerInUseEvenWithoutItsLockFile() throws {
        let source = try KillTestDirectory("salvage-live")
        defer { source.remove() }
        let ledger = try Ledger.open(directory: source.path)
        defer { try? ledger.close() }
        let target = try KillTestDirectory("salvage-live-new")
        defer { target.remove() }
        try FileManager.default.removeItem(atPath: target.path)
        for round in 0..<2 {
            if round == 1 { try FileManager.default.removeItem(atPath: source.path + "/" + LedgerFileNames.lock) }
            let run = try CLI.run(["salvage", source.path, "--to", target.path])
            #expect(run.exitCode == 8, "round \(round): \(run.stderr)")
            #expect(run.stderr == "Error: \(source.path) is in use by process \(getpid()); close it there first\n",
                    "round \(round)")
            #expect(!FileManager.default.fileExists(atPath: target.path), "round \(round)")
        }
    }
}

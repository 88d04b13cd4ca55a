// Proves `onceledger salvage` is honest about damage it cannot measure and recovers what can be
// read: a deleted newest segment (the last one left ends with a seal naming it), and a last
// segment cut below or inside its records (0, 32, 63, 64, 4096 bytes, and inside its last
// record), are each a loss of unknown size (exit 4), with every record before it copied;
// a last segment sparse-extended past 4 GiB is read by its data extents, whole; swapped segment
// files are read by their headers' numbers; an unreadable segment (a directory, a FIFO, an
// injected I/O error, chmod 000 when not root) is skipped and reported; an interrupted salvage
// (an injected ENOSPC or SIGKILL, with strace) leaves no NEWDIR; a missing DIR is "no such
// directory" (and, with --json, a failure object on standard output).
// How: a ledger is written by `onceledger stress`, its records listed by `onceledger dump --json`,
// then a copy is damaged and salvaged. The expected entries of the new ledger are computed from
// the dump (the records that survive the damage, replayed: intent → pending-unknown, completion →
// done, release → absent) and compared with what the new ledger holds, with the exit code and
// the exact "result:" line.
import Foundation
import OnceLedger
import OnceLedgerFormat
import Testing

@Suite struct SalvageDamageTests {
    /// One record of `onceledger dump --json`.
    struct DumpRecord: Decodable {
        var source: String
        var segment: UInt64?
        var offset: UInt64?
        var kind: String
        var key: String?
        var bodyBytes: Int?

        var frameEnd: UInt64 { (offset ?? 0) + UInt64(((32 + (bodyBytes ?? 0)) + 7) / 8 * 8) }
    }

    /// A ledger of several 16 KiB segments written by `stress`, and its records.
    struct Source {
        var directory: KillTestDirectory
        var records: [DumpRecord]
        var path: String { directory.path }
        var lastSegment: UInt64 { records.compactMap(\.segment).max() ?? 1 }
        func segmentPath(_ number: UInt64) -> String { path + "/" + LedgerFileNames.segment(number) }

        /// The entries a ledger holding only the records `keep` accepts has.
        func entries(keeping keep: (DumpRecord) -> Bool) -> [String: EntryInfo.Status] {
            var entries: [String: EntryInfo.Status] = [:]
            for record in records where record.source == "log" && keep(record) {
                guard let key = record.key else { continue }
                switch record.kind {
                case "intent": entries[key] = .pendingUnknown
                case "completion": entries[key] = .done
                case "release": entries[key] = .absent
                default: Issue.record("stress wrote a \(record.kind) record; the oracle does not know it")
                }
            }
            return entries
        }
    }

    static func makeSource(_ label: String) throws -> Source {
        let directory = try KillTestDirectory("salvage-\(label)")
        let effects = ProcessInfo.processInfo.environment["ONCELEDGER_SALVAGE_EFFECTS"] ?? "600"
        let stress = try CLI.run(["stress", directory.path, "--effects", effects, "--concurrency", "1", "--seed", "3",
                                  "--segment-bytes", "16384", "--fail-percent", "0"])
        #expect(stress.exitCode == 0, "\(stress.stderr)")
        let dump = try CLI.run(["dump", directory.path, "--json"])
        #expect(dump.exitCode == 0, "\(dump.stderr)")
        let decoder = JSONDecoder()
        let records = try dump.stdout.split(separator: "\n").map { try decoder.decode(DumpRecord.self, from: Data($0.utf8)) }
        let source = Source(directory: directory, records: records)
        try #require(source.lastSegment >= 3, "the test ledger needs several segments")
        return source
    }

    static func resultLine(_ report: String) -> String {
        report.split(separator: "\n").last { $0.hasPrefix("result: ") }.map(String.init) ?? "(no result line)"
    }

    static let nothingLost = "result: nothing lost"
    static func unknownLoss(_ segment: UInt64) -> String {
        "result: something was lost (an unknown number of records lost in segment \(segment)); check the entries above against the systems the effects touched"
    }

    // MARK: A deleted newest segment

    /// The newest segment deleted (then the two newest): the last one left ends with a seal
    /// naming the missing one (RECOVERY R16), a loss of unknown size; every record of the
    /// segments left is copied.
    @Test func deletedNewestSegmentIsALossOfUnknownSize() throws {
        let source = try Self.makeSource("newest")
        defer { source.directory.remove() }
        let last = source.lastSegment
        for deleted in [last, last - 1] {
            try FileManager.default.removeItem(atPath: source.segmentPath(deleted))
            let run = try SalvageCommandTests.salvage(source.path)
            defer { run.target.remove() }
            #expect(run.exitCode == 4, "\(run.report)")
            #expect(Self.resultLine(run.report) == Self.unknownLoss(deleted))
            #expect(run.report.contains("""
                LOST, how many records unknown: a segment that is missing, with no later segment or record to count what it held:
                  segment \(deleted) (\(LedgerFileNames.segment(deleted))): missing: segment \(deleted - 1) ends with a seal naming it, so it was created and may have held acknowledged records (deleted, or lost with the file system); any segment after it is gone too

                """), "\(run.report)")
            #expect(run.entries == source.entries { $0.segment! < deleted })
        }
    }

    // MARK: A cut last segment

    @Test(arguments: [0, 32, 63, 64, 4096, -1])
    func truncatedLastSegmentIsALossOfUnknownSize(cut requested: Int) throws {
        let source = try Self.makeSource("cut")
        defer { source.directory.remove() }
        let last = source.lastSegment
        let lastEnd = source.records.filter { $0.segment == last }.map(\.frameEnd).max() ?? 64
        // -1: inside the last record of the segment.
        let cut = requested >= 0 ? UInt64(requested) : lastEnd - 8
        #expect(truncate(source.segmentPath(last), off_t(cut)) == 0)

        let run = try SalvageCommandTests.salvage(source.path)
        defer { run.target.remove() }
        let expected = source.entries { $0.segment! < last || $0.frameEnd <= cut }
        #expect(run.entries == expected, "cut at \(cut)")
        // The cut lost nothing only when a whole zero record slot after the last record survives.
        if cut >= lastEnd + 32 {
            #expect(run.exitCode == 0)
            #expect(Self.resultLine(run.report) == Self.nothingLost)
        } else {
            #expect(run.exitCode == 4, "cut at \(cut): \(run.report)")
            #expect(Self.resultLine(run.report) == Self.unknownLoss(last), "cut at \(cut)")
            #expect(run.report.contains("LOST, how many records unknown:"))
        }
        if requested == 0 {
            #expect(run.report.contains("\n  segment \(last) (\(LedgerFileNames.segment(last))): file is 0 bytes, shorter than a segment header\n"))
        }
        if requested == -1 {
            #expect(run.report.contains("a record runs past the end of the file (it was cut short)"))
        }
    }

    @Test func sparseLastSegmentPastFourGiBIsReadWhole() throws {
        let source = try Self.makeSource("sparse")
        defer { source.directory.remove() }
        let last = source.lastSegment
        // Sparse: costs no disk. The scan reads only the data extents.
        #expect(truncate(source.segmentPath(last), off_t(5) << 30) == 0)

        let run = try SalvageCommandTests.salvage(source.path)
        defer { run.target.remove() }
        #expect(run.exitCode == 0, "\(run.report)")
        #expect(Self.resultLine(run.report) == Self.nothingLost)
        #expect(run.entries == source.entries { _ in true })
        #expect(run.report.contains("file is 5368709120 bytes but its header says"))
    }

    // MARK: Renamed files

    @Test func swappedSegmentsAreReadByTheirHeaders() throws {
        let source = try Self.makeSource("swap")
        defer { source.directory.remove() }
        let (a, b) = (UInt64(2), source.lastSegment - 1)
        try #require(a < b)
        let spare = source.path + "/spare"
        #expect(rename(source.segmentPath(a), spare) == 0)
        #expect(rename(source.segmentPath(b), source.segmentPath(a)) == 0)
        #expect(rename(spare, source.segmentPath(b)) == 0)

        let run = try SalvageCommandTests.salvage(source.path)
        defer { run.target.remove() }
        #expect(run.exitCode == 0, "\(run.report)")
        #expect(Self.resultLine(run.report) == Self.nothingLost)
        #expect(run.entries == source.entries { _ in true })
        #expect(run.report.contains("file name says segment \(a) but the header says \(b): read as segment \(b)"))
        #expect(run.report.contains("file name says segment \(b) but the header says \(a): read as segment \(a)"))
    }

    // MARK: Unreadable segments

    /// Salvages `source` after `damage` made segment 2 unreadable (`run` runs the command);
    /// checks the other segments were copied and the loss reported.
    static func checkUnreadableSegment(
        _ label: String, damage: (String) throws -> Void, run: ([String]) throws -> CLI.Result = { try CLI.run($0) }
    ) throws {
        let source = try makeSource("unreadable-\(label)")
        let broken = UInt64(2)
        let path = source.segmentPath(broken)
        defer {
            chmod(path, 0o644)
            source.directory.remove()
        }
        try damage(path)
        let target = try KillTestDirectory("salvage-new")
        defer { target.remove() }
        let result = try run(["salvage", source.path, "--to", target.path])
        #expect(result.exitCode == 4, "\(label): \(result.stdout)\(result.stderr)")
        let lost = source.records.filter { $0.source == "log" && $0.segment == broken }.count
        #expect(resultLine(result.stdout)
            == "result: something was lost (\(lost) durable records lost, segment \(broken) unreadable); check the entries above against the systems the effects touched",
            "\(label): \(result.stdout)")
        #expect(result.stdout.contains("\n  \(LedgerFileNames.segment(broken)): cannot be read: "), "\(label): \(result.stdout)")
        let store = try FileStore(directory: target.path, createIfMissing: false)
        var entries: [String: EntryInfo.Status] = [:]
        for entry in try store.currentEntries() { entries[entry.key] = entry.status }
        try store.close()
        #expect(entries == source.entries { $0.segment != broken }, "\(label)")
    }

    @Test func segmentThatIsADirectoryIsSkipped() throws {
        try Self.checkUnreadableSegment("directory") { path in
            try FileManager.default.removeItem(atPath: path)
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        }
    }

    @Test func segmentThatIsAFIFOIsSkippedWithoutHanging() throws {
        try Self.checkUnreadableSegment("fifo", damage: { path in
            try FileManager.default.removeItem(atPath: path)
            #expect(mkfifo(path, 0o644) == 0)
        }, run: { arguments in
            // Opening a FIFO for reading blocks until a writer comes: a salvage that did so
            // would never end. A guard of two minutes (the child is then killed and the test
            // records an issue) keeps such a regression from hanging the test run; it is not a
            // timing assertion.
            try CLI.runProcess(CLI.executableURL, arguments, patience: 120)
        })
    }

    @Test(.enabled(if: KillTestStrace.usable, KillTestStrace.skipMessage))
    func segmentWithAnIOErrorIsSkipped() throws {
        var segment = ""
        try Self.checkUnreadableSegment("io-error", damage: { segment = $0 }, run: { arguments in
            // The file's second read fails (its first reads the header).
            try Self.runTraced(["-P", segment, "-e", "trace=pread64", "-e", "inject=pread64:error=EIO:when=2"], arguments)
        })
    }

    @Test(.enabled(if: geteuid() != 0, "root reads a chmod 000 file; the directory and I/O error cases cover root"))
    func segmentWithoutReadPermissionIsSkipped() throws {
        try Self.checkUnreadableSegment("permissions") { path in #expect(chmod(path, 0) == 0) }
    }

    @Test func unreadableLastSegmentIsALossOfUnknownSize() throws {
        let source = try Self.makeSource("unreadable-last")
        defer { source.directory.remove() }
        let last = source.lastSegment
        try FileManager.default.removeItem(atPath: source.segmentPath(last))
        try FileManager.default.createDirectory(atPath: source.segmentPath(last), withIntermediateDirectories: false)

        let run = try SalvageCommandTests.salvage(source.path)
        defer { run.target.remove() }
        #expect(run.exitCode == 4)
        #expect(Self.resultLine(run.report) == Self.unknownLoss(last))
        #expect(run.report.contains("  \(LedgerFileNames.segment(last)): cannot be read: not a regular file (a directory)\n"))
        #expect(run.entries == source.entries { $0.segment! < last })
    }

    // MARK: Interrupted salvage

    @Test(.enabled(if: KillTestStrace.usable, KillTestStrace.skipMessage), arguments: ["ENOSPC", "SIGKILL"])
    func interruptedSalvageLeavesNoNewLedger(fault: String) throws {
        let source = try Self.makeSource("interrupted")
        defer { source.directory.remove() }
        let parent = try KillTestDirectory("salvage-parent")
        defer { parent.remove() }
        let target = parent.path + "/NEW"
        let staging = target + ".salvage-tmp"
        // Fail (or kill salvage at) the first write of the new ledger's second segment.
        let segment = staging + "/" + LedgerFileNames.segment(2) + ".tmp"
        let calls = "pwrite64,pwritev2,write,ftruncate,fallocate"
        let action = fault == "SIGKILL" ? "signal=SIGKILL" : "error=ENOSPC"
        let traced = try Self.runTraced(["-P", segment, "-e", "trace=\(calls)", "-e", "inject=\(calls):\(action):when=1"],
                                        ["salvage", source.path, "--to", target])
        #expect(!FileManager.default.fileExists(atPath: target), "\(fault): \(target) exists after an interrupted salvage")
        let verify = try CLI.run(["verify", target])
        #expect(verify.exitCode == 8)
        #expect(verify.stderr.contains("no such directory"), "\(verify.stderr)")

        if fault == "ENOSPC" {
            #expect(traced.exitCode == 8)
            #expect(traced.stderr.contains("No space left on device"), "\(traced.stderr)")
            #expect(traced.stderr.hasSuffix("\n\(target) was not created\n"), "\(traced.stderr)")
            #expect(!FileManager.default.fileExists(atPath: staging), "the partial copy was not removed")
        } else {
            #expect(traced.exitCode == 128 + SIGKILL)
            // The partial copy is marked, and a new salvage refuses to start until it is removed.
            #expect(FileManager.default.fileExists(atPath: staging + "/SALVAGE-INCOMPLETE"))
            let again = try CLI.run(["salvage", source.path, "--to", target])
            #expect(again.exitCode == 8)
            #expect(again.stderr == "Error: \(staging) exists: an earlier salvage into \(target) was interrupted there; remove it (rm -r) and run salvage again\n")
            try FileManager.default.removeItem(atPath: staging)
        }
        let complete = try CLI.run(["salvage", source.path, "--to", target])
        #expect(complete.exitCode == 0, "\(complete.stderr)")
        #expect(Self.resultLine(complete.stdout) == Self.nothingLost)
        #expect(!FileManager.default.fileExists(atPath: staging))
        #expect(!FileManager.default.fileExists(atPath: target + "/SALVAGE-INCOMPLETE"))
        #expect(try CLI.run(["verify", target]).exitCode == 0)
    }

    /// `onceledger arguments…` run under `strace -f -qq -o /dev/null options…`, to the end.
    /// A death by a signal is reported as exit code 128 + the signal.
    static func runTraced(_ options: [String], _ arguments: [String]) throws -> CLI.Result {
        try CLI.runProcess(URL(fileURLWithPath: KillTestStrace.path!),
                           ["-f", "-qq", "-o", "/dev/null"] + options + [CLI.executableURL.path] + arguments)
    }

    // MARK: Arguments

    @Test func missingSourceIsNoSuchDirectory() throws {
        let parent = try KillTestDirectory("salvage-nodir")
        defer { parent.remove() }
        let missing = parent.path + "/nodir"
        let result = try CLI.run(["salvage", missing, "--to", parent.path + "/NEW"])
        #expect(result.exitCode == 8)
        #expect(result.stderr == "Error: \(missing): no such directory. Pass the ledger's directory (the one holding wal-*.seg files).\n")
        #expect(!FileManager.default.fileExists(atPath: parent.path + "/NEW"))

        // With --json the failure is also one object on standard output, as for the other commands.
        let json = try CLI.run(["salvage", missing, "--to", parent.path + "/NEW", "--json"])
        #expect(json.exitCode == 8)
        #expect(json.stdout == "{\"code\":\"not-a-ledger\",\"message\":\"\(missing): no such directory. Pass the ledger's directory (the one holding wal-*.seg files).\",\"exitCode\":8}\n")
        #expect(json.stderr == result.stderr)
    }
}

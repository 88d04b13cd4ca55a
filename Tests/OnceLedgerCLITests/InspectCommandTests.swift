// Proves that the operator commands `verify`, `dump`, `stat`, `pending`, `entries`, `resolve`,
// `forget` and `compact` print exactly what they should and exit with fsck(8)'s codes, on fixture
// ledgers: copies of the golden ledgers in Spec/vectors (clean, torn tail, corruption in a sealed
// segment, corruption proven by acked-through, compacted), and ledgers grown from them with the
// library under a fixed clock (a missing segment, a malformed body, an effect that threw and left
// its key pending-unknown), so every byte and every printed time is deterministic. Each test runs
// the built executable in a fresh temporary directory and compares the whole standard output,
// standard error and exit code (the temporary path is replaced by `$DIR`); JSON output is parsed.
import Foundation
import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import Synchronization
import Testing

// MARK: Fixtures

private enum Fixture {
    static let vectors = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Spec/vectors").path

    /// A fresh directory `<temp>/<unique>/<name>`; removed by `cleanUp`.
    static func directory(_ name: String) throws -> String {
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("onceledger-inspect-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        return parent.appendingPathComponent(name).path
    }

    /// A copy of `Spec/vectors/<vector>` in a fresh directory.
    static func copy(_ vector: String) throws -> String {
        let path = try directory(vector)
        try FileManager.default.copyItem(atPath: vectors + "/" + vector, toPath: path)
        return path
    }

    static func cleanUp(_ path: String) {
        try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }

    /// Time that moves one second per reading, from 2023-11-14T22:16:40Z (T + 200 s).
    static func steppingClock() -> @Sendable () -> UInt64 {
        let next = Mutex<UInt64>(1_700_000_200_000)
        return { next.withLock { value in defer { value += 1000 }; return value } }
    }

    /// `ledger-clean` plus, through the `Ledger` API: `email:welcome-alice` done with receipt
    /// `msg-1001`, and `charge:order-7` whose effect threw (so it is pending-unknown).
    static func withPendingEffect() async throws -> String {
        let path = try copy("ledger-clean")
        let ledger = try Ledger.open(directory: path, configuration: LogConfiguration(segmentBytes: 4096),
                                     createIfMissing: false, clock: steppingClock())
        _ = try await ledger.onceBytes("email:welcome-alice") { _ in Array("msg-1001".utf8) }
        await #expect(throws: LedgerError.self) {
            _ = try await ledger.onceBytes("charge:order-7") { _ in throw PaymentTimeout() }
        }
        try ledger.close()
        try removeLock(path)
        return path
    }

    /// The LOCK file holds the last opener's pid, whose digits would make sizes vary.
    static func removeLock(_ path: String) throws {
        try FileManager.default.removeItem(atPath: path + "/" + LedgerFileNames.lock)
    }

    struct PaymentTimeout: Error {}

    /// `ledger-clean` grown to four 4 KiB segments with ten 1000-byte opaque records.
    static func grown() throws -> String {
        let path = try copy("ledger-clean")
        let engine = try LogEngine.open(directory: path, configuration: LogConfiguration(segmentBytes: 4096),
                                        createIfMissing: false, clock: steppingClock())
        for index in 0..<10 {
            _ = try engine.appendAndWait([LogRecord(kind: .opaque, body: Array(repeating: UInt8(index), count: 1000))])
        }
        try engine.close()
        return path
    }

    /// `grown()` with segment 2 deleted.
    static func missingSegment() throws -> String {
        let path = try grown()
        try FileManager.default.removeItem(atPath: path + "/" + LedgerFileNames.segment(2))
        return path
    }

    /// `ledger-clean` plus one intent record whose body does not decode (a valid frame and checksum).
    static func malformedBody() throws -> String {
        let path = try copy("ledger-clean")
        let engine = try LogEngine.open(directory: path, createIfMissing: false, clock: steppingClock())
        _ = try engine.appendAndWait([LogRecord(kind: .intent, body: [1, 2, 3])])
        try engine.close()
        return path
    }

    static func files(_ path: String) -> [String: Data] {
        var result: [String: Data] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            result[name] = FileManager.default.contents(atPath: path + "/" + name)
        }
        return result
    }
}

/// Runs `onceledger arguments…` (every `$DIR` replaced by `directory`) and returns the result with
/// `directory` replaced by `$DIR` in both output streams.
private func run(_ arguments: [String], in directory: String, environment: [String: String] = [:]) throws -> CLI.Result {
    var result = try CLI.run(arguments.map { $0.replacingOccurrences(of: "$DIR", with: directory) },
                             environment: environment)
    result.stdout = result.stdout.replacingOccurrences(of: directory, with: "$DIR")
    result.stderr = result.stderr.replacingOccurrences(of: directory, with: "$DIR")
    return result
}

/// Compares a whole output; on a mismatch, also writes the actual text next to the fixture
/// (`<fixture>.actual.txt`) so it can be reviewed and diffed.
private func expectOutput(_ actual: String, _ expected: String, _ label: String,
                          sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual == expected, "\(label) differs", sourceLocation: sourceLocation)
    if actual != expected {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("onceledger-inspect-\(label).actual.txt")
        try? actual.write(to: file, atomically: true, encoding: .utf8)
        Issue.record("actual \(label) written to \(file.path)", sourceLocation: sourceLocation)
    }
}

private func jsonObject(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
    let value = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return try #require(value as? [String: Any], sourceLocation: sourceLocation)
}

private func jsonLines(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [[String: Any]] {
    try text.split(separator: "\n").map { try jsonObject(String($0), sourceLocation: sourceLocation) }
}

// MARK: Tests

@Suite struct InspectCommandTests {
    // MARK: verify

    @Test func verifyCleanLedger() throws {
        let dir = try Fixture.copy("ledger-clean")
        defer { Fixture.cleanUp(dir) }
        let before = Fixture.files(dir)
        let result = try run(["verify", "$DIR"], in: dir)
        #expect(result.exitCode == 0)
        expectOutput(result.stdout, """
            ledger      $DIR
            ledger id   000102030405060708090a0b0c0d0e0f
            snapshot    none
            segments    1 segment, 4,096 bytes
              wal-0000000000000001.seg  5 records (seq 1…5), 488 of 4,096 bytes used
            records     5 (seq 1…5): intent 2, completion 1, memo-put 1, checkpoint 1
            entries     2 keys: 1 done, 1 pending-unknown, 0 absent
            tail        clean
            recovery    R11 clean: every record valid; the rest of the last segment is zeros
            problems    none
            note        1 pending-unknown entry needs an operator decision: `onceledger pending $DIR`
            result      clean (exit 0)

            """, "verify-clean")
        #expect(result.stderr == "")
        #expect(Fixture.files(dir) == before, "verify must not change anything (not even create LOCK)")
    }

    @Test func verifyReportsATornTailAsACrashStateAndRepairCutsIt() throws {
        let dir = try Fixture.copy("ledger-torn")
        defer { Fixture.cleanUp(dir) }
        let before = Fixture.files(dir)
        let result = try run(["verify", "$DIR"], in: dir)
        #expect(result.exitCode == 0)
        expectOutput(result.stdout, """
            ledger      $DIR
            ledger id   000102030405060708090a0b0c0d0e0f
            snapshot    none
            segments    1 segment, 4,096 bytes
              wal-0000000000000001.seg  2 records (seq 1…2), 256 of 4,096 bytes used, then a torn tail
            records     2 (seq 1…2): intent 1, completion 1
            entries     1 key: 1 done, 0 pending-unknown, 0 absent
            tail        torn at segment 1 offset 256: 280 bytes from sequence 3 on (checksum mismatch: stored 0x67c4382c, computed 0x037df0dc)
              a torn tail is an ordinary crash state, not corruption: the batch being written when the writer stopped was never acknowledged
            recovery    R15 torn-tail: a bad record in the last segment that nothing proves durable
            problems    none
            repairable  the torn tail: the next open (or `onceledger verify --repair`) copies its bytes to torn-0000000000000001-0000000000000100.bin and cuts segment 1 at offset 256
            result      no corruption; the torn tail is left for the next open to cut (exit 0). `onceledger verify --repair $DIR` cuts it now.

            """, "verify-torn")
        #expect(result.stderr == "")
        #expect(Fixture.files(dir) == before)

        let repaired = try run(["verify", "--repair", "$DIR"], in: dir)
        #expect(repaired.exitCode == 1)
        expectOutput(repaired.stdout, """
            ledger      $DIR
            ledger id   000102030405060708090a0b0c0d0e0f
            snapshot    none
            segments    1 segment, 4,096 bytes
              wal-0000000000000001.seg  2 records (seq 1…2), 256 of 4,096 bytes used
            records     2 (seq 1…2): intent 1, completion 1
            entries     1 key: 1 done, 0 pending-unknown, 0 absent
            tail        clean
            recovery    R11 clean: every record valid; the rest of the last segment is zeros
            problems    none
            repaired    cut the torn tail of segment 1 at offset 256 (280 bytes, from sequence 3 on) and kept its bytes in torn-0000000000000001-0000000000000100.bin
            note        quarantined torn tails kept for operators (never read by recovery): torn-0000000000000001-0000000000000100.bin
            result      repaired (exit 1): the ledger now opens without changes.

            """, "verify-repair")
        #expect(repaired.stderr == "")
        let side = try #require(FileManager.default.contents(atPath: dir + "/torn-0000000000000001-0000000000000100.bin"))
        #expect(side.count == 280)

        let again = try run(["verify", "--repair", "$DIR"], in: dir)
        #expect(again.exitCode == 0, "nothing left to repair")
        #expect(again.stdout.hasSuffix("result      clean (exit 0)\n"))
    }

    @Test func verifyLeavesTemporaryFilesToTheNextOpenAndRepairDeletesThem() throws {
        let dir = try Fixture.copy("ledger-clean")
        defer { Fixture.cleanUp(dir) }
        #expect(FileManager.default.createFile(atPath: dir + "/wal-0000000000000002.seg.tmp", contents: Data([1, 2, 3])))
        #expect(FileManager.default.createFile(atPath: dir + "/notes.txt", contents: Data("mine".utf8)))
        let result = try run(["verify", "$DIR"], in: dir)
        #expect(result.exitCode == 0)
        #expect(result.stdout.contains("""
            repairable  leftover temporary files (creations that never finished; the next open deletes them): wal-0000000000000002.seg.tmp
            note        1 pending-unknown entry needs an operator decision: `onceledger pending $DIR`
            note        files that are not part of the ledger (ignored): notes.txt
            result      no corruption; leftover temporary files are left for the next open to delete (exit 0).

            """))
        let repaired = try run(["verify", "--repair", "$DIR"], in: dir)
        #expect(repaired.exitCode == 1)
        #expect(repaired.stdout.contains("repaired    deleted the leftover temporary file wal-0000000000000002.seg.tmp (a creation that never finished)\n"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/wal-0000000000000002.seg.tmp"))
        #expect(FileManager.default.fileExists(atPath: dir + "/notes.txt"), "files that are not the ledger's are left alone")
    }

    @Test func verifyFindsCorruptionInASealedSegmentAndChangesNothing() throws {
        let dir = try Fixture.copy("ledger-sealed-corrupt")
        defer { Fixture.cleanUp(dir) }
        let before = Fixture.files(dir)
        let result = try run(["verify", "$DIR"], in: dir)
        #expect(result.exitCode == 4)
        expectOutput(result.stdout, """
            ledger      $DIR
            ledger id   000102030405060708090a0b0c0d0e0f
            snapshot    none
            segments    2 segments, 8,192 bytes
              wal-0000000000000001.seg  1 record (seq 1), 176 of 4,096 bytes used, problem at offset 176
              wal-0000000000000002.seg  not reached by the scan (it stops at the first problem); on its own: 3 records (seq 5…7), clean end at offset 272
            records     1 (seq 1) before the first problem: intent 1
            entries     not computed: the ledger refuses to open
            tail        corrupt
            recovery    R12 corrupt-sealed: a bad record in a segment that is not the last
            problems    1
              [corrupt-record] record 2 is damaged (checksum mismatch: stored 0xd113b4ce, computed 0xf544dcc3) and was durable: its segment is sealed (a later segment exists); run `onceledger salvage` (file wal-0000000000000001.seg, segment 1, offset 176, sequence 2, expected checksum 0xf544dcc3, actual checksum 0xd113b4ce)
            result      damaged (exit 4): the ledger refuses to open; verify changed nothing. Copy what is recoverable into a new directory with `onceledger salvage` (it never changes this one).

            """, "verify-sealed-corrupt")
        #expect(result.stderr == "")
        #expect(Fixture.files(dir) == before)

        // --repair never touches corruption.
        let repair = try run(["verify", "--repair", "$DIR"], in: dir)
        #expect(repair.exitCode == 4)
        #expect(Fixture.files(dir) == before)
    }

    @Test func verifyFindsCorruptionProvenByAckedThrough() throws {
        let dir = try Fixture.copy("ledger-acked-corrupt")
        defer { Fixture.cleanUp(dir) }
        let result = try run(["verify", "$DIR"], in: dir)
        #expect(result.exitCode == 4)
        #expect(result.stdout.contains("recovery    R14 corrupt-acked: a bad record followed by a valid record whose acked-through covers it\n"))
        #expect(result.stdout.contains("  [corrupt-record] record 3 is damaged (checksum mismatch: stored 0x67c4382c, computed 0x3ea20047) and was durable: a later valid record says sequence 4 was durable; run `onceledger salvage` (file wal-0000000000000001.seg, segment 1, offset 256, sequence 3, expected checksum 0x3ea20047, actual checksum 0x67c4382c)\n"))
    }

    @Test func verifyFindsAMissingSegment() throws {
        let dir = try Fixture.missingSegment()
        defer { Fixture.cleanUp(dir) }
        let result = try run(["verify", "$DIR"], in: dir)
        #expect(result.exitCode == 4)
        expectOutput(result.stdout, """
            ledger      $DIR
            ledger id   000102030405060708090a0b0c0d0e0f
            snapshot    none
            segments    3 segments, 12,288 bytes
              wal-0000000000000001.seg  not reached by the scan (it stops at the first problem); on its own: 9 records (seq 1…9), clean end at offset 3632
              wal-0000000000000003.seg  not reached by the scan (it stops at the first problem); on its own: 4 records (seq 14…17), clean end at offset 3208
              wal-0000000000000004.seg  not reached by the scan (it stops at the first problem); on its own: 2 records (seq 18…19), clean end at offset 1136
            records     0 before the first problem
            entries     not computed: the ledger refuses to open
            tail        not reached
            recovery    R5 missing-segment: segment numbers have a gap, the first segment starts after the snapshot, or a snapshot has no segment
            problems    1
              [missing-segment] segment 2 is missing (found 1 then 3) (segment 2)
            result      damaged (exit 4): the ledger refuses to open; verify changed nothing. Copy what is recoverable into a new directory with `onceledger salvage` (it never changes this one).

            """, "verify-missing-segment")
    }

    @Test func verifyFindsAMalformedRecordBody() throws {
        let dir = try Fixture.malformedBody()
        defer { Fixture.cleanUp(dir) }
        let result = try run(["verify", "$DIR"], in: dir)
        #expect(result.exitCode == 4)
        #expect(result.stdout.contains("recovery    R11 clean: every record valid; the rest of the last segment is zeros\n"))
        #expect(result.stdout.contains("entries     not computed: the ledger refuses to open\n"))
        #expect(result.stdout.contains("  [malformed-body] record 6 (intent): intent body is malformed or exceeds a limit; the ledger refuses to open; run `onceledger salvage` (file wal-0000000000000001.seg, segment 1, offset 488, sequence 6)\n"))
        let json = try jsonObject(try run(["verify", "--json", "$DIR"], in: dir).stdout)
        #expect(json["result"] as? String == "damaged")
        let problems = try #require(json["problems"] as? [[String: Any]])
        #expect(problems.first?["code"] as? String == "malformed-body")
        #expect(problems.first?["sequence"] as? Int == 6)
        #expect(problems.first?["offset"] as? Int == 488)
    }

    @Test func verifyJSONIsOneParsableObject() throws {
        for (vector, result, exitCode, tail) in [
            ("ledger-clean", "clean", 0, "clean"), ("ledger-torn", "repairable", 0, "torn"),
            ("ledger-sealed-corrupt", "damaged", 4, "corrupt"), ("ledger-compacted", "clean", 0, "clean"),
        ] {
            let dir = try Fixture.copy(vector)
            defer { Fixture.cleanUp(dir) }
            let output = try run(["verify", "--json", "$DIR"], in: dir)
            #expect(Int(output.exitCode) == exitCode, "\(vector)")
            #expect(output.stderr == "")
            let json = try jsonObject(output.stdout)
            #expect(json["result"] as? String == result, "\(vector)")
            #expect(json["exitCode"] as? Int == exitCode)
            #expect(json["directory"] as? String == "$DIR")
            #expect(json["ledgerID"] as? String == "000102030405060708090a0b0c0d0e0f")
            #expect((json["tail"] as? [String: Any])?["state"] as? String == tail, "\(vector)")
            let problems = try #require(json["problems"] as? [[String: Any]])
            #expect(problems.isEmpty == (exitCode == 0))
            if vector == "ledger-torn" {
                let tail = try #require(json["tail"] as? [String: Any])
                #expect(tail["offset"] as? Int == 256)
                #expect(tail["bytes"] as? Int == 280)
                #expect(tail["expectedSequence"] as? Int == 3)
                #expect(tail["sideFile"] as? String == "torn-0000000000000001-0000000000000100.bin")
            }
            if vector == "ledger-sealed-corrupt" {
                #expect(problems[0]["code"] as? String == "corrupt-record")
                #expect(problems[0]["segment"] as? Int == 1)
                #expect(problems[0]["offset"] as? Int == 176)
                #expect(problems[0]["sequence"] as? Int == 2)
                #expect(problems[0]["expectedChecksum"] as? String == "0xf544dcc3")
                #expect(problems[0]["actualChecksum"] as? String == "0xd113b4ce")
            }
            if vector == "ledger-compacted" {
                let entries = try #require(json["entries"] as? [String: Any])
                #expect(entries["done"] as? Int == 2)
                #expect(entries["pending-unknown"] as? Int == 1)
                #expect((json["snapshot"] as? [String: Any])?["coveredSequence"] as? Int == 7)
            }
        }
    }

    // MARK: Locking and bad input

    @Test func aLockedLedgerIsRefusedNamingTheHolder() throws {
        let dir = try Fixture.copy("ledger-clean")
        defer { Fixture.cleanUp(dir) }
        let engine = try LogEngine.open(directory: dir, createIfMissing: false)
        defer { try? engine.close() }
        let pid = getpid()

        let verify = try run(["verify", "$DIR"], in: dir)
        #expect(verify.exitCode == 8)
        #expect(verify.stdout == "")
        expectOutput(verify.stderr, """
            Error: the ledger in $DIR is locked by process \(pid) (it holds $DIR/LOCK). `onceledger verify` reads without taking the lock, and a writer appending meanwhile would make the result unreliable. Close the ledger in that process (or stop it) and run the command again.

            """, "verify-locked")

        let dump = try run(["dump", "$DIR"], in: dir)
        #expect(dump.exitCode == 8)
        #expect(dump.stderr.contains("locked by process \(pid)"))
        #expect(dump.stderr.contains("or pass --live to read it anyway."))

        let live = try run(["pending", "--live", "$DIR"], in: dir)
        #expect(live.exitCode == 0)
        #expect(live.stdout.hasPrefix("KEY       ATTEMPT"))
        #expect(live.stderr == "note: process \(pid) has the ledger open; this is a live view: pending-unknown entries may be in flight there, and a torn tail may be a batch being written.\n")

        let resolve = try run(["resolve", "$DIR", "order-43", "--absent", "--reason", "r", "--actor", "a"], in: dir)
        #expect(resolve.exitCode == 8)
        expectOutput(resolve.stderr, """
            Error: [locked] the ledger is locked by process \(pid); close it there first (one writer per directory) (holder pid \(pid))
            Only one process may write a ledger. Close it in that process (or stop it), then run the command again.

            """, "resolve-locked")
        for command in [["compact", "$DIR"], ["verify", "--repair", "$DIR"],
                        ["forget", "$DIR", "order-42-receipt", "--reason", "r", "--i-understand-this-allows-a-rerun"]] {
            let output = try run(command, in: dir)
            #expect(output.exitCode == 8, "\(command)")
            #expect(output.stderr.contains("process \(pid)"), "\(command)")
        }
    }

    @Test func aPathThatIsNotALedgerExits8() throws {
        let dir = try Fixture.directory("empty")
        defer { Fixture.cleanUp(dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for command in ["verify", "dump", "stat", "pending", "entries", "compact"] {
            let output = try run([command, "$DIR"], in: dir)
            #expect(output.exitCode == 8, "\(command)")
            #expect(output.stdout == "", "\(command)")
            #expect(output.stderr == "Error: $DIR is not a ledger: it holds no segment (wal-<16 hex>.seg) and no snapshot (snap-<16 hex>.snap). Check the path; a ledger is created by the application's first Ledger.open.\n", "\(command)")
        }
        #expect(Fixture.files(dir).isEmpty, "no LOCK file left behind")
        let missing = try run(["stat", "$DIR/nope"], in: dir)
        #expect(missing.exitCode == 8)
        #expect(missing.stderr == "Error: $DIR/nope: no such directory. Pass the ledger's directory (the one holding wal-*.seg files).\n")
        let resolve = try run(["resolve", "$DIR/nope", "k", "--absent", "--reason", "r"], in: dir)
        #expect(resolve.exitCode == 8)
    }

    @Test func badArgumentsExit16WithUsage() throws {
        let dir = try Fixture.copy("ledger-clean")
        defer { Fixture.cleanUp(dir) }
        let cases: [([String], String)] = [
            (["verify"], """
                Error: Missing expected argument '<dir>'
                Help:  <dir>  The ledger directory (the one holding wal-*.seg segment files).
                Usage: onceledger verify <dir> [--json] [--repair]
                  See 'onceledger verify --help' for more information.

                """),
            (["dump", "$DIR", "--kind", "bogus"], """
                Error: unknown record kind "bogus"; use one of intent, completion, release, resolve, forget, memo-put, journal-entry, run-terminal, snapshot-marker, checkpoint, entry-state, seal, memo-entry, run-end, memo-sweep, generation-floor, entry-retention, opaque or a number such as 7
                Usage: onceledger dump <dir> [--json] [--key <key>] [--kind <kind> ...] [--since <seq>] [--live]
                  See 'onceledger dump --help' for more information.

                """),
            (["entries", "$DIR", "--state", "finished"], """
                Error: unknown state "finished"; use done, pending-unknown or absent
                Usage: onceledger entries <dir> [--json] [--state <state>] [--live] [--schema <name>]
                  See 'onceledger entries --help' for more information.

                """),
            (["resolve", "$DIR", "order-43", "--reason", "checked"], """
                Error: say what happened: exactly one of --done (the effect happened), --absent (it did not) or --correct (replace a done entry's receipt)
                Usage: onceledger resolve <dir> <key> [--done] [--absent] [--correct] [--receipt <receipt>] [--receipt-raw <receipt-raw>] [--receipt-hex <receipt-hex>] --reason <reason> [--actor <actor>] [--schema <name>]
                  See 'onceledger resolve --help' for more information.

                """),
            (["forget", "$DIR", "order-42-receipt", "--reason", "resend"], """
                Error: forget removes a done entry, so the next call with this key performs the effect again (a second email, a second charge). If that is what you want, add --i-understand-this-allows-a-rerun.
                Usage: onceledger forget <dir> <key> --reason <reason> [--actor <actor>] [--i-understand-this-allows-a-rerun] [--schema <name>]
                  See 'onceledger forget --help' for more information.

                """),
        ]
        let before = Fixture.files(dir)
        for (arguments, expected) in cases {
            let output = try run(arguments, in: dir)
            #expect(output.exitCode == 16, "\(arguments)")
            #expect(output.stdout == "", "\(arguments)")
            expectOutput(output.stderr, expected, "usage-\(arguments[0])")
        }
        for arguments in [["stat", "$DIR", "--bogus"], ["resolve", "$DIR", "k", "--done", "--absent", "--reason", "r"],
                          ["resolve", "$DIR", "k", "--absent", "--receipt", "x", "--reason", "r"],
                          ["resolve", "$DIR", "k", "--done", "--reason", " "],
                          ["resolve", "$DIR", "k", "--done", "--receipt-hex", "abc", "--reason", "r"],
                          ["dump", "$DIR", "--since", "minus-one"], ["no-such-command"]] {
            let output = try run(arguments, in: dir)
            #expect(output.exitCode == 16, "\(arguments)")
            #expect(output.stderr.contains("Usage: onceledger"), "\(arguments)")
        }
        #expect(Fixture.files(dir) == before, "a usage error changes nothing")
        #expect(try run(["verify", "--help"], in: dir).exitCode == 0)
    }

    // MARK: verify: the newest segment (seal records)

    @Test func verifyRefusesADeletedNewestSegmentAndCompletesAnInterruptedRollover() throws {
        let deleted = try Fixture.copy("ledger-newest-deleted")
        defer { Fixture.cleanUp(deleted) }
        let refused = try run(["verify", "$DIR"], in: deleted)
        #expect(refused.exitCode == 4)
        #expect(refused.stdout.contains("recovery    R16 missing-newest-segment: the last segment ends with a seal naming a successor segment that does not exist\n"))
        #expect(refused.stdout.contains("[missing-segment] segment 2 is missing: segment 1 ends with a seal naming it"))

        let interrupted = try Fixture.copy("ledger-interrupted-rollover")
        defer { Fixture.cleanUp(interrupted) }
        let before = Fixture.files(interrupted)
        let looked = try run(["verify", "$DIR"], in: interrupted)
        #expect(looked.exitCode == 0, "an interrupted rollover is a crash state, not damage")
        #expect(looked.stdout.contains("recovery    R17 interrupted-rollover:"))
        #expect(looked.stdout.contains("repairable  an interrupted rollover (an ordinary crash state): segment 1 is sealed and names segment 2"))
        #expect(Fixture.files(interrupted) == before, "verify without --repair changes nothing")
        let repaired = try run(["verify", "--repair", "$DIR"], in: interrupted)
        #expect(repaired.exitCode == 1)
        #expect(repaired.stdout.contains("repaired    completed the interrupted rollover: renamed wal-0000000000000002.seg.tmp to wal-0000000000000002.seg"))
        #expect(repaired.stdout.contains("recovery    R11 clean"))
        let dump = try run(["dump", "--kind", "seal", "$DIR"], in: interrupted)
        #expect(dump.stdout.hasPrefix("seq=4 segment=1 offset=4008 kind=seal successor=2 time=2023-11-14T22:13:22.500Z acked=3 batch-end crc=0x890428c2\n"))
    }

    // MARK: dump

    @Test func dumpShowsSnapshotItemsThenEveryRecord() throws {
        let dir = try Fixture.copy("ledger-compacted")
        defer { Fixture.cleanUp(dir) }
        let result = try run(["dump", "$DIR"], in: dir)
        #expect(result.exitCode == 0)
        expectOutput(result.stdout, """
            snapshot=snap-0000000000000007.snap item=0 kind=entry-state key="order-42-receipt" state=done attempt=1 generation=0 intentTime=2023-11-14T22:13:20.000Z completedTime=2023-11-14T22:13:21.500Z fingerprint=a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf receipt="msg-7f3a" token=olt_7d030b7d8a5cbb80ea36a984b50c0634
            snapshot=snap-0000000000000007.snap item=1 kind=entry-state key="order-43" state=done attempt=1 generation=0 intentTime=2023-11-14T22:13:22.000Z completedTime=2023-11-14T22:13:23.000Z fingerprint=none receipt="ok" token=olt_b325ef8480632853d5bf76cf86996745
            snapshot=snap-0000000000000007.snap item=2 kind=memo-put run="run-9" step="summarize" name="llm" time=2023-11-14T22:13:22.100Z value="A short summary."
            seq=7 segment=2 offset=64 kind=completion key="order-43" attempt=1 time=2023-11-14T22:13:23.000Z receipt="ok" acked=6 batch-end crc=0xb9dbb35a covered-by-snapshot
            seq=8 segment=2 offset=128 kind=snapshot-marker coveredSequence=7 time=2023-11-14T22:13:24.000Z snapshotBytes=328 acked=7 batch-end crc=0x09720dce
            seq=9 segment=2 offset=184 kind=intent key="order-44" attempt=1 generation=0 scope=while-in-flight time=2023-11-14T22:13:25.000Z fingerprint=a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf token=olt_1d4414cb234e5c3304fe80410f964aa5 acked=8 batch-end crc=0x3276302b
            seq=10 segment=2 offset=288 kind=checkpoint time=2023-11-14T22:13:26.000Z acked=9 batch-end crc=0x18915c70
            -- shown: 4 of 4 records, 3 of 3 snapshot items; tail: clean

            """, "dump-compacted")
        #expect(result.stderr == "")
    }

    @Test func dumpJSONLinesParseAndFiltersWork() throws {
        let dir = try Fixture.copy("ledger-compacted")
        defer { Fixture.cleanUp(dir) }
        let all = try run(["dump", "--json", "$DIR"], in: dir)
        #expect(all.exitCode == 0)
        #expect(all.stderr == "")
        let lines = try jsonLines(all.stdout)
        #expect(lines.count == 7)
        #expect(lines.map { $0["kind"] as? String } == [
            "entry-state", "entry-state", "memo-put", "completion", "snapshot-marker", "intent", "checkpoint",
        ])
        #expect(lines.map { $0["seq"] as? Int } == [nil, nil, nil, 7, 8, 9, 10])
        #expect(lines[0]["source"] as? String == "snapshot")
        #expect(lines[0]["key"] as? String == "order-42-receipt")
        #expect(lines[0]["receipt"] as? String == "msg-7f3a")
        #expect(lines[0]["receiptEncoding"] as? String == "utf8")
        #expect(lines[3]["source"] as? String == "log")
        #expect(lines[3]["coveredBySnapshot"] as? Bool == true)
        #expect(lines[3]["segment"] as? Int == 2)
        #expect(lines[3]["offset"] as? Int == 64)
        #expect(lines[5]["key"] as? String == "order-44")
        #expect(lines[5]["scope"] as? String == "while-in-flight")
        #expect(lines[5]["timeMs"] as? Int == 1_700_000_005_000)
        #expect(lines[5]["time"] as? String == "2023-11-14T22:13:25.000Z")
        #expect(lines[6]["key"] == nil, "a checkpoint has no key")

        let byKey = try jsonLines(try run(["dump", "--json", "--key", "order-43", "$DIR"], in: dir).stdout)
        #expect(byKey.map { $0["kind"] as? String } == ["entry-state", "completion"])
        #expect(byKey.allSatisfy { $0["key"] as? String == "order-43" })

        let byKind = try jsonLines(try run(["dump", "--json", "--kind", "intent", "--kind", "10", "$DIR"], in: dir).stdout)
        #expect(byKind.map { $0["seq"] as? Int } == [9, 10])

        let since = try jsonLines(try run(["dump", "--json", "--since", "9", "$DIR"], in: dir).stdout)
        #expect(since.map { $0["seq"] as? Int } == [9, 10], "--since leaves out snapshot items, which have no sequence number")

        let text = try run(["dump", "--key", "order-44", "$DIR"], in: dir)
        expectOutput(text.stdout, """
            seq=9 segment=2 offset=184 kind=intent key="order-44" attempt=1 generation=0 scope=while-in-flight time=2023-11-14T22:13:25.000Z fingerprint=a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf token=olt_1d4414cb234e5c3304fe80410f964aa5 acked=8 batch-end crc=0x3276302b
            -- shown: 1 of 4 records, 0 of 3 snapshot items; tail: clean

            """, "dump-key")
    }

    @Test func dumpOfATornLedgerStopsAtTheTailAndOfACorruptOneExits4() throws {
        let torn = try Fixture.copy("ledger-torn")
        defer { Fixture.cleanUp(torn) }
        let tornResult = try run(["dump", "$DIR"], in: torn)
        #expect(tornResult.exitCode == 0)
        expectOutput(tornResult.stdout, """
            seq=1 segment=1 offset=64 kind=intent key="order-42-receipt" attempt=1 generation=0 scope=forever time=2023-11-14T22:13:20.000Z fingerprint=a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf token=olt_7d030b7d8a5cbb80ea36a984b50c0634 acked=0 batch-end crc=0x432c85ca
            seq=2 segment=1 offset=176 kind=completion key="order-42-receipt" attempt=1 time=2023-11-14T22:13:21.500Z receipt="msg-7f3a" acked=1 batch-end crc=0xd113b4ce
            -- shown: 2 of 2 records, 0 of 0 snapshot items; tail: torn at segment 1 offset 256 (280 bytes from sequence 3 on, never acknowledged; the next open cuts them)

            """, "dump-torn")
        let tornJSON = try run(["dump", "--json", "$DIR"], in: torn)
        #expect(try jsonLines(tornJSON.stdout).count == 2)
        #expect(tornJSON.stderr == "note: the log ends in a torn tail at segment 1 offset 256 (280 bytes from sequence 3 on, never acknowledged; the next open cuts them).\n")

        let corrupt = try Fixture.copy("ledger-sealed-corrupt")
        defer { Fixture.cleanUp(corrupt) }
        let corruptResult = try run(["dump", "$DIR"], in: corrupt)
        #expect(corruptResult.exitCode == 4)
        #expect(corruptResult.stdout.hasSuffix("-- shown: 1 of 1 records, 0 of 0 snapshot items; tail: not read past the first problem (see the error)\n"))
        expectOutput(corruptResult.stderr, """
            Error: the ledger is damaged; records are shown up to the first problem: [corrupt-record] record 2 is damaged (checksum mismatch: stored 0xd113b4ce, computed 0xf544dcc3) and was durable: its segment is sealed (a later segment exists); run `onceledger salvage` (file wal-0000000000000001.seg, segment 1, offset 176, sequence 2, expected checksum 0xf544dcc3, actual checksum 0xd113b4ce)
            Run `onceledger verify $DIR` for the full report; `onceledger salvage` copies what is recoverable to a new directory.

            """, "dump-corrupt-stderr")
    }

    // MARK: stat, pending, entries

    @Test func statShowsSizesCountsAndTheOldestPendingEntry() async throws {
        let dir = try await Fixture.withPendingEffect()
        defer { Fixture.cleanUp(dir) }
        let result = try run(["stat", "$DIR"], in: dir)
        #expect(result.exitCode == 0)
        expectOutput(result.stdout, """
            ledger          $DIR
            ledger id       000102030405060708090a0b0c0d0e0f
            disk use        4,096 bytes in 1 file (segments 4,096)
            segments        1 (number 1); active segment 1: 840 of 4,096 bytes used
            snapshot        none
            records         9 (seq 1…9)
              by kind       intent 4, completion 2, memo-put 1, checkpoint 2
            entries         4 keys: 2 done, 2 pending-unknown, 0 absent
            oldest pending  order-43 since 2023-11-14T22:13:22.000Z (attempt 1, token olt_b325ef8480632853d5bf76cf86996745)
            memo            0 run generations (0 running, 0 ended), 0 memo entries, 0 value bytes
            tail            clean

            """, "stat")
        #expect(result.stderr == "")
        let json = try jsonObject(try run(["stat", "--json", "$DIR"], in: dir).stdout)
        #expect((json["entries"] as? [String: Any])?["pending-unknown"] as? Int == 2)
        #expect((json["oldestPendingUnknown"] as? [String: Any])?["key"] as? String == "order-43")
        #expect((json["diskBytes"] as? [String: Any])?["segment"] as? Int == 4096)
        #expect((json["records"] as? [String: Any])?["count"] as? Int == 9)
    }

    @Test func pendingAndEntriesListTheState() async throws {
        let dir = try await Fixture.withPendingEffect()
        defer { Fixture.cleanUp(dir) }
        let pending = try run(["pending", "$DIR"], in: dir)
        #expect(pending.exitCode == 0)
        expectOutput(pending.stdout, """
            KEY             ATTEMPT  INTENT TIME               TOKEN
            ---------------------------------------------------------------------------------------
            order-43              1  2023-11-14T22:13:22.000Z  olt_b325ef8480632853d5bf76cf86996745
            charge:order-7        1  2023-11-14T22:16:42.000Z  olt_d06dd055ac971b2d38ef244f8285cf02

            2 pending-unknown entries: the effect may or may not have happened. Ask the downstream system about the token, then record the answer:
              onceledger resolve $DIR KEY --done [--receipt JSON] --reason TEXT   (it happened)
              onceledger resolve $DIR KEY --absent --reason TEXT                  (it did not; the next call runs it)

            """, "pending")
        #expect(pending.stderr == "")
        let pendingJSON = try jsonLines(try run(["pending", "--json", "$DIR"], in: dir).stdout)
        #expect(pendingJSON.map { $0["key"] as? String } == ["order-43", "charge:order-7"])
        #expect(pendingJSON.allSatisfy { $0["state"] as? String == "pending-unknown" })
        #expect(pendingJSON[1]["attempt"] as? Int == 1)
        #expect(pendingJSON[1]["intentTimeMs"] as? Int == 1_700_000_202_000)

        let entries = try run(["entries", "$DIR"], in: dir)
        #expect(entries.exitCode == 0)
        expectOutput(entries.stdout, """
            KEY                  STATE            ATTEMPT  TIME                      RECEIPT
            -----------------------------------------------------------------------------------
            charge:order-7       pending-unknown        1  2023-11-14T22:16:42.000Z
            email:welcome-alice  done                   1  2023-11-14T22:16:41.000Z  "msg-1001"
            order-42-receipt     done                   1  2023-11-14T22:13:21.500Z  "msg-7f3a"
            order-43             pending-unknown        1  2023-11-14T22:13:22.000Z

            """, "entries")
        let done = try jsonLines(try run(["entries", "--json", "--state", "done", "$DIR"], in: dir).stdout)
        #expect(done.map { $0["key"] as? String } == ["email:welcome-alice", "order-42-receipt"])
        #expect(done.map { $0["receipt"] as? String } == ["msg-1001", "msg-7f3a"])
        #expect(done.allSatisfy { $0["state"] as? String == "done" && $0["receiptEncoding"] as? String == "utf8" })
        let absent = try run(["entries", "--state", "absent", "$DIR"], in: dir)
        #expect(absent.stdout == "no absent entries\n")

        // A damaged ledger's entries are not listed.
        let corrupt = try Fixture.copy("ledger-sealed-corrupt")
        defer { Fixture.cleanUp(corrupt) }
        let refused = try run(["entries", "$DIR"], in: corrupt)
        #expect(refused.exitCode == 4)
        #expect(refused.stdout == "")
        #expect(refused.stderr.hasPrefix("Error: the ledger is damaged, so its entries cannot be listed: [corrupt-record]"))
    }

    // MARK: resolve, forget, compact

    @Test func resolveRecordsTheAnswerAndPendingNoLongerListsIt() async throws {
        let dir = try await Fixture.withPendingEffect()
        defer { Fixture.cleanUp(dir) }
        let resolved = try run(["resolve", "$DIR", "charge:order-7", "--done", "--receipt-raw", "ch_7", "--reason",
                                "charged once, seen in the processor dashboard", "--actor", "alice"], in: dir)
        #expect(resolved.exitCode == 0)
        expectOutput(resolved.stdout, """
            resolved charge:order-7: pending-unknown → done (attempt 1, receipt "ch_7"); later calls with this key return this receipt
            recorded in the log as sequence 10 by "alice": "charged once, seen in the processor dashboard"

            """, "resolve")
        #expect(resolved.stderr == "")

        let absent = try run(["resolve", "$DIR", "order-43", "--absent", "--reason", "never sent"],
                             in: dir, environment: ["USER": "bob"])
        #expect(absent.exitCode == 0)
        expectOutput(absent.stdout, """
            resolved order-43: pending-unknown → absent (attempt 1); the next call with this key runs the effect, with the same token olt_b325ef8480632853d5bf76cf86996745 (or, if a compaction drops the absent entry first, a later generation's: never an old one)
            recorded in the log as sequence 12 by "bob": "never sent"

            """, "resolve-absent")

        let pending = try run(["pending", "$DIR"], in: dir)
        #expect(pending.stdout == "no pending-unknown entries\n")
        #expect(try run(["pending", "--json", "$DIR"], in: dir).stdout == "")

        let resolves = try jsonLines(try run(["dump", "--json", "--kind", "resolve", "$DIR"], in: dir).stdout)
        #expect(resolves.count == 2)
        #expect(resolves[0]["seq"] as? Int == 10)
        #expect(resolves[0]["key"] as? String == "charge:order-7")
        #expect(resolves[0]["outcome"] as? String == "done")
        #expect(resolves[0]["receipt"] as? String == "ch_7")
        #expect(resolves[0]["actor"] as? String == "alice")
        #expect(resolves[0]["reason"] as? String == "charged once, seen in the processor dashboard")
        #expect(resolves[1]["outcome"] as? String == "absent")
        #expect(resolves[1]["actor"] as? String == "bob")

        let entries = try jsonLines(try run(["entries", "--json", "$DIR"], in: dir).stdout)
        #expect(entries.map { "\($0["key"] as? String ?? ""):\($0["state"] as? String ?? "")" } == [
            "charge:order-7:done", "email:welcome-alice:done", "order-42-receipt:done", "order-43:absent",
        ])

        // Resolving again: the entry is not pending any more; nothing is written.
        let before = Fixture.files(dir)
        let again = try run(["resolve", "$DIR", "charge:order-7", "--absent", "--reason", "oops"], in: dir)
        #expect(again.exitCode == 8)
        #expect(again.stdout == "")
        #expect(again.stderr == "Error: cannot resolve charge:order-7: it is done; only pending-unknown entries can be resolved. Nothing was written. To replace a done entry's receipt, use --correct. List them with `onceledger pending $DIR`.\n")
        let unknown = try run(["resolve", "$DIR", "no-such-key", "--absent", "--reason", "oops"], in: dir)
        #expect(unknown.exitCode == 8)
        #expect(unknown.stderr.contains("the ledger has no entry for this key"))
        #expect(Fixture.files(dir).filter { $0.key != "LOCK" } == before.filter { $0.key != "LOCK" })
    }

    @Test func forgetNeedsTheFlagAndIsRecorded() throws {
        let dir = try Fixture.copy("ledger-clean")
        defer { Fixture.cleanUp(dir) }
        let before = Fixture.files(dir)
        let refused = try run(["forget", "$DIR", "order-42-receipt", "--reason", "customer asked for a resend"], in: dir)
        #expect(refused.exitCode == 16)
        #expect(Fixture.files(dir) == before)

        let forgot = try run(["forget", "$DIR", "order-42-receipt", "--reason", "customer asked for a resend",
                              "--actor", "ops@example.com", "--i-understand-this-allows-a-rerun"], in: dir)
        #expect(forgot.exitCode == 0)
        expectOutput(forgot.stdout, """
            forgot order-42-receipt: done → absent (its receipt was "msg-7f3a"); the next call with this key runs the effect again, with a new token olt_a355052044f24dc190a2677bce11bdc2 (or, if a compaction drops the forgotten entry first, a later generation's: never an old one)
            recorded in the log as sequence 6 by "ops@example.com": "customer asked for a resend"

            """, "forget")
        let forgets = try jsonLines(try run(["dump", "--json", "--kind", "forget", "$DIR"], in: dir).stdout)
        #expect(forgets.count == 1)
        #expect(forgets.first?["actor"] as? String == "ops@example.com")
        #expect(forgets.first?["reason"] as? String == "customer asked for a resend")
        let entry = try jsonLines(try run(["entries", "--json", "--state", "absent", "$DIR"], in: dir).stdout)
        #expect(entry.first?["key"] as? String == "order-42-receipt")
        #expect(entry.first?["generation"] as? Int == 1)

        let pendingKey = try run(["forget", "$DIR", "order-43", "--reason", "r", "--i-understand-this-allows-a-rerun"], in: dir)
        #expect(pendingKey.exitCode == 8)
        #expect(pendingKey.stderr == "Error: cannot forget order-43: it is pending-unknown; only done entries can be forgotten. Nothing was written. A pending-unknown entry is resolved with `onceledger resolve`.\n")
    }

    @Test func compactWritesASnapshotAndReportsDiskUse() throws {
        let dir = try Fixture.grown()
        defer { Fixture.cleanUp(dir) }
        let entriesBefore = try run(["entries", "--json", "$DIR"], in: dir).stdout

        let result = try run(["compact", "$DIR"], in: dir)
        #expect(result.exitCode == 0)
        expectOutput(result.stdout, """
            compacted $DIR: snap-0000000000000013.snap covers sequence 19 (3 items, 464 bytes)
            before  4 segments, no snapshot: 16,384 bytes
            after   1 segment, 1 snapshot: 4,560 bytes
            deleted 3 segments: wal-0000000000000001.seg, wal-0000000000000002.seg, wal-0000000000000003.seg

            """, "compact")
        #expect(result.stderr == "")
        #expect(try run(["entries", "--json", "$DIR"], in: dir).stdout == entriesBefore, "compaction keeps every entry")
        let verify = try run(["verify", "$DIR"], in: dir)
        #expect(verify.exitCode == 0)
        #expect(verify.stdout.contains("snapshot    snap-0000000000000013.snap: covers sequence 19, 3 items, 464 bytes\n"))
    }
}

import Foundation
import OnceLedgerFormat
import OnceLedgerLog

/// Where salvage (`Salvage.write`) builds the new ledger, so that an interrupted salvage (a full disk, a
/// kill, a power cut) never leaves a partial ledger at NEWDIR that looks complete:
///
/// 1. create `NEWDIR.salvage-tmp` beside NEWDIR, holding a marker file
///    `SALVAGE-INCOMPLETE` (written, fsync'd; the directory and its parent fsync'd);
/// 2. write the new ledger into it (the library fsyncs every file and directory entry)
///    and read it back;
/// 3. remove the marker, fsync the directory, rename `NEWDIR.salvage-tmp` to NEWDIR in one
///    step (replacing NEWDIR when it is an empty directory), fsync the parent.
///
/// So NEWDIR either does not exist (or is still the empty directory it was) or holds the
/// whole new ledger. A `NEWDIR.salvage-tmp` left by an interrupted run carries the marker
/// (until the last moment) and is never used: salvage refuses to start while it exists.
public struct SalvageDestination: Sendable {
    /// NEWDIR (absolute, standardized).
    public let target: String
    public static let stagingSuffix = ".salvage-tmp"
    public static let markerName = "SALVAGE-INCOMPLETE"

    public var staging: String { target + SalvageDestination.stagingSuffix }
    public var parent: String { (target as NSString).deletingLastPathComponent }
    private var storage: PosixStorage { PosixStorage() }

    /// NEWDIR must be missing or an empty directory on the same file system as its parent
    /// (the rename cannot cross file systems); no earlier staging directory may be left.
    public init(target: String) { self.target = target }

    public func check() throws(Salvage.Failure) {
        var info = stat()
        if lstat(target, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else {
                throw .init("\(target) exists and is not a directory")
            }
            let contents = (try? FileManager.default.contentsOfDirectory(atPath: target)) ?? ["?"]
            guard contents.isEmpty else {
                throw .init("\(target) is not empty; salvage writes only into a new or empty directory")
            }
            var parentInfo = stat()
            if stat(parent, &parentInfo) == 0, parentInfo.st_dev != info.st_dev {
                throw .init("\(target) is a mount point; salvage builds the new ledger beside it and renames it into place, which cannot cross file systems: pass a new directory inside it (such as \(target)/ledger)")
            }
        }
        if lstat(staging, &info) == 0 {
            throw .init("\(staging) exists: an earlier salvage into \(target) was interrupted there; remove it (rm -r) and run salvage again")
        }
    }

    /// Step 1: the staging directory with its marker, durable.
    public func create() throws {
        try createParents()
        try storage.createDirectory(staging)
        try storage.synchronizeDirectory(parent)
        let marker = try storage.openFile(staging + "/" + SalvageDestination.markerName, mode: .createExclusive)
        defer { marker.close() }
        try marker.write(Array("An onceledger salvage into \(target) was building the new ledger here and did not finish. Do not use these files; remove this directory and run salvage again.\n".utf8), at: 0)
        try marker.synchronize()
        try storage.synchronizeDirectory(staging)
    }

    /// Step 3: the marker goes, then the staging directory becomes NEWDIR.
    public func install() throws {
        var info = stat()
        if stat(target, &info) == 0 { _ = chmod(staging, info.st_mode & 0o7777) }  // keep an empty NEWDIR's mode
        try storage.removeFile(staging + "/" + SalvageDestination.markerName)
        try storage.synchronizeDirectory(staging)
        try storage.rename(staging, to: target)
        try storage.synchronizeDirectory(parent)
    }

    /// After a failure: remove the staging directory (best effort). True when it is gone.
    public func discard() -> Bool {
        try? FileManager.default.removeItem(atPath: staging)
        return !FileManager.default.fileExists(atPath: staging)
    }

    /// Creates the missing directories above NEWDIR, each made durable in its parent.
    private func createParents() throws {
        var missing: [String] = []
        var directory = parent
        while !FileManager.default.fileExists(atPath: directory) && directory != "/" {
            missing.append(directory)
            directory = (directory as NSString).deletingLastPathComponent
        }
        for path in missing.reversed() {
            try storage.createDirectory(path)
            try storage.synchronizeDirectory((path as NSString).deletingLastPathComponent)
        }
    }
}

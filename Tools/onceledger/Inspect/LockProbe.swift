#if !os(Linux)
#error("onceledger supports Linux (glibc) only: it reads /proc/locks and calls Glibc, as the OnceLedger libraries do.")
#endif
import Glibc
import Foundation
import OnceLedgerFormat
import OnceLedgerLog

/// Finds out, without taking it, whether a live process holds a ledger's lock
/// (`Spec/FORMAT.md` §2.2: `flock(LOCK_EX)` on the directory itself, and on `DIR/LOCK`).
///
/// The directory's lock is the one that counts: deleting or replacing `LOCK` cannot
/// hide it. `LOCK` is checked too, for a writer of an earlier version, which locked
/// only that file.
///
/// Read-only commands take no lock, so that they can never make a writer's open fail.
/// On Linux the kernel lists every `flock` with its owner's pid and the locked file's
/// device and inode in `/proc/locks`; matching the directory or the `LOCK` file there
/// changes nothing. Where `/proc/locks` cannot be read, the probe tries
/// `flock(LOCK_SH|LOCK_NB)` on read-only descriptors and releases it at once (a writer
/// opening in exactly that instant would see the ledger as locked; the window is a few
/// microseconds). `LOCK` is never opened through a link or in a way that could block
/// (it might be a FIFO).
enum LockProbe {
    struct Holder: Sendable, Equatable {
        /// The holder's pid, from the kernel (or else from the `LOCK` file's text).
        var pid: Int32?
        /// What is locked: the directory, or its `LOCK` file.
        var lockPath: String

        var who: String { pid.map { "process \($0)" } ?? "another process" }
    }

    /// The live holder of `directory`'s lock, or nil if nobody holds it.
    static func holder(of directory: String) -> Holder? {
        let lockPath = Paths.join(directory, LedgerFileNames.lock)
        var directoryInfo = stat()
        guard stat(directory, &directoryInfo) == 0 else { return nil }
        var lockInfo = stat()
        let lockIsFile = lstat(lockPath, &lockInfo) == 0 && (lockInfo.st_mode & S_IFMT) == S_IFREG
        let textPID = lockIsFile ? PosixStorage.lockHolderText(lockPath) : nil
        var candidates = [(info: directoryInfo, path: directory)]
        if lockIsFile { candidates.append((lockInfo, lockPath)) }
        do {
            // The library's one parser of /proc/locks: nil there means nobody holds it.
            return try PosixStorage.lockHolder(of: directory).map { Holder(pid: $0.pid, lockPath: $0.lockPath) }
        } catch {
            // /proc/locks cannot be read: fall back to the probe below.
        }
        // No /proc/locks: probe with a shared lock, released at once.
        for candidate in candidates {
            let flags = candidate.path == directory
                ? O_RDONLY | O_DIRECTORY | O_CLOEXEC : O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK
            let fd = open(candidate.path, flags)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            if flock(fd, LOCK_SH | LOCK_NB) == 0 {
                flock(fd, LOCK_UN)
                continue
            }
            return Holder(pid: textPID, lockPath: candidate.path)
        }
        return nil
    }
}

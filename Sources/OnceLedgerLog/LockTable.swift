import Glibc
import OnceLedgerFormat

/// A live holder of a ledger's writer lock, as the kernel lists it (`Spec/FORMAT.md` §2.2).
public struct LockHolder: Sendable, Equatable {
    /// The holder's pid, from the kernel (or else from the `LOCK` file's text).
    public var pid: Int32?
    /// What is locked: the directory itself, or its `LOCK` file.
    public var lockPath: String

    public init(pid: Int32?, lockPath: String) {
        self.pid = pid
        self.lockPath = lockPath
    }
}

extension PosixStorage {
    /// Who holds `directory`'s writer lock, found without taking it: the `FLOCK WRITE`
    /// entry of `/proc/locks` whose device and inode are the directory's (or its
    /// regular `LOCK` file's, for a writer of an earlier version). The kernel's pid is
    /// the truth even when `LOCK` was deleted or rewritten. Returns nil when nobody
    /// holds the lock; throws `.io` when `/proc/locks` cannot be read (then the caller
    /// cannot tell, and may probe with `flock(LOCK_SH|LOCK_NB)` instead).
    public static func lockHolder(of directory: String) throws -> LockHolder? {
        let (fd, error) = Syscalls.open("/proc/locks", flags: O_RDONLY)
        guard fd >= 0 else {
            throw LedgerError(
                .io, "cannot open /proc/locks to find the lock holder: \(Syscalls.errnoText(error))",
                path: "/proc/locks", errno: error)
        }
        defer { Syscalls.close(fd) }
        guard let table = Syscalls.readToEnd(fd) else {
            throw LedgerError(.io, "cannot read /proc/locks to find the lock holder", path: "/proc/locks")
        }
        return LockTable.holder(of: directory, in: String(decoding: table, as: UTF8.self))
    }
}

/// The parser of `/proc/locks` (one, for the library's `.locked` error and the CLI's probe).
enum LockTable {
    static func holder(of directory: String, in table: String) -> LockHolder? {
        guard let directoryInfo = Syscalls.status(directory, followLink: true) else { return nil }
        let lockPath = Paths.join(directory, LedgerFileNames.lock)
        var candidates = [(info: directoryInfo, path: directory)]
        var textPID: Int32?
        if let lockInfo = Syscalls.status(lockPath, followLink: false), (lockInfo.st_mode & S_IFMT) == S_IFREG {
            candidates.append((lockInfo, lockPath))
            textPID = PosixStorage.lockHolderText(lockPath)
        }
        for line in table.split(separator: "\n") {
            // "1: FLOCK  ADVISORY  WRITE 4242 fe:00:16220561 0 EOF"
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[1] == "FLOCK", fields[3] == "WRITE" else { continue }
            let place = fields[5].split(separator: ":")
            guard place.count == 3, let lineInode = UInt64(place[2]),
                  let lineMajor = UInt64(place[0], radix: 16), let lineMinor = UInt64(place[1], radix: 16)
            else { continue }
            let pid = Int32(fields[4])
            for candidate in candidates where UInt64(candidate.info.st_ino) == lineInode {
                // glibc's `major`/`minor` of a `dev_t`; /proc/locks prints them in hex.
                let device = UInt64(candidate.info.st_dev)
                let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~UInt64(0xfff))
                let minor = (device & 0xff) | ((device >> 12) & ~UInt64(0xff))
                // On a stacked file system (overlayfs) the device may be the lower one's;
                // then the inode must agree with the pid the holder wrote into LOCK.
                if (lineMajor == major && lineMinor == minor) || (pid != nil && pid == textPID) {
                    return LockHolder(pid: pid ?? textPID, lockPath: candidate.path)
                }
            }
        }
        return nil
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import OnceLedgerFormat

/// Finds out, without taking it, whether a live process holds a ledger's lock
/// (`Spec/FORMAT.md` §2.2: `flock(LOCK_EX)` on `DIR/LOCK`).
///
/// Read-only commands take no lock, so that they can never make a writer's open fail.
/// On Linux the kernel lists every `flock` with its owner's pid and the locked file's
/// device and inode in `/proc/locks`; matching the `LOCK` file there changes nothing.
/// Where `/proc/locks` cannot be read, the probe tries `flock(LOCK_SH|LOCK_NB)` on a
/// read-only descriptor and releases it at once (a writer opening in exactly that
/// instant would see the ledger as locked; the window is a few microseconds).
enum LockProbe {
    struct Holder: Sendable, Equatable {
        /// The holder's pid, from the kernel (or else from the `LOCK` file's text).
        var pid: Int32?
        var lockPath: String

        var who: String { pid.map { "process \($0)" } ?? "another process" }
    }

    /// The live holder of `directory`'s lock, or nil if nobody holds it.
    static func holder(of directory: String) -> Holder? {
        let lockPath = directory.hasSuffix("/") ? directory + LedgerFileNames.lock : directory + "/" + LedgerFileNames.lock
        var info = stat()
        guard stat(lockPath, &info) == 0 else { return nil }  // no LOCK file: never opened by a writer
        let textPID = pidText(lockPath)
        if let table = try? String(contentsOfFile: "/proc/locks", encoding: .utf8) {
            // glibc's `major`/`minor` of a `dev_t`; /proc/locks prints them in hex.
            let device = UInt64(info.st_dev)
            let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~UInt64(0xfff))
            let minor = (device & 0xff) | ((device >> 12) & ~UInt64(0xff))
            let inode = UInt64(info.st_ino)
            for line in table.split(separator: "\n") {
                // "1: FLOCK  ADVISORY  WRITE 4242 fe:00:16220561 0 EOF"
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count >= 6, fields[1] == "FLOCK", fields[3] == "WRITE" else { continue }
                let place = fields[5].split(separator: ":")
                guard place.count == 3, let lineInode = UInt64(place[2]), lineInode == inode,
                      let lineMajor = UInt64(place[0], radix: 16), let lineMinor = UInt64(place[1], radix: 16)
                else { continue }
                let pid = Int32(fields[4])
                // On a stacked file system (overlayfs) the device may be the lower one's;
                // then the inode must agree with the pid the holder wrote into LOCK.
                if (lineMajor == major && lineMinor == minor) || (pid != nil && pid == textPID) {
                    return Holder(pid: pid ?? textPID, lockPath: lockPath)
                }
            }
            return nil
        }
        // No /proc/locks: probe with a shared lock, released at once.
        let fd = open(lockPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        return Holder(pid: textPID, lockPath: lockPath)
    }

    /// The pid the holder wrote into LOCK (advisory text, up to 32 bytes).
    private static func pidText(_ lockPath: String) -> Int32? {
        guard let handle = FileHandle(forReadingAtPath: lockPath) else { return nil }
        defer { try? handle.close() }
        guard let data = try? handle.read(upToCount: 32) else { return nil }
        return Int32(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

import Foundation

/// Which file system and block device a directory lives on, for the benchmark's
/// header line: the numbers mean nothing without the disk they were measured on.
struct DiskDescription: Codable, Sendable {
    var directory: String
    var mountPoint: String?
    var source: String?
    var fileSystem: String?
    /// `major:minor` of the device holding `directory`.
    var device: String?
    /// From `/sys/dev/block/<device>/queue/rotational` (a virtual disk may claim 1).
    var rotational: Bool?
    /// From `/sys/dev/block/<device>/queue/write_cache`: "write back" or "write through".
    var writeCache: String?

    var isMemoryBacked: Bool { fileSystem == "tmpfs" || fileSystem == "ramfs" }

    var summary: String {
        var parts: [String] = []
        if let source { parts.append(source) }
        if let fileSystem { parts.append(fileSystem) }
        if let mountPoint { parts.append("mounted at \(mountPoint)") }
        if let device { parts.append("device \(device)") }
        if let rotational { parts.append(rotational ? "rotational=1" : "rotational=0") }
        if let writeCache { parts.append("write cache: \(writeCache)") }
        return parts.isEmpty ? "(unknown device)" : parts.joined(separator: ", ")
    }

    static func of(_ directory: String) -> DiskDescription {
        var result = DiskDescription(directory: directory)
        var info = stat()
        let device: String? = stat(directory, &info) == 0 ? DiskDescription.majorMinor(UInt64(info.st_dev)) : nil
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return result }
        // Fields: id parent major:minor root mount-point options [optional...] - fstype source super-options
        var best: (mountPoint: String, fields: [Substring], sourceFields: [Substring])?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 5, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { continue }
            let mountPoint = unescape(String(fields[4]))
            let sameDevice = device != nil && String(fields[2]) == device
            let isPrefix = directory == mountPoint || directory.hasPrefix(mountPoint == "/" ? "/" : mountPoint + "/")
            guard isPrefix, sameDevice || device == nil else { continue }
            if best == nil || mountPoint.count >= best!.mountPoint.count {
                best = (mountPoint, fields, Array(fields[(dash + 1)...]))
            }
        }
        if let best {
            result.mountPoint = best.mountPoint
            result.fileSystem = String(best.sourceFields[0])
            result.source = String(best.sourceFields[1])
            result.device = String(best.fields[2])
        }
        if let device = result.device {
            let base = "/sys/dev/block/\(device)"
            for queue in ["\(base)/queue", "\(base)/../queue"] {
                if let rotational = readTrimmed("\(queue)/rotational") {
                    result.rotational = rotational == "1"
                    result.writeCache = readTrimmed("\(queue)/write_cache")
                    break
                }
            }
        }
        return result
    }

    /// glibc's `major`/`minor` encoding of `dev_t`.
    private static func majorMinor(_ dev: UInt64) -> String {
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
        let minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
        return "\(major):\(minor)"
    }

    private static func readTrimmed(_ path: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    private static func unescape(_ field: String) -> String {
        field.replacingOccurrences(of: "\\040", with: " ").replacingOccurrences(of: "\\011", with: "\t")
            .replacingOccurrences(of: "\\012", with: "\n").replacingOccurrences(of: "\\134", with: "\\")
    }
}

import Glibc
import Synchronization

/// The memo's decoded values, kept per name and type (README "Memo", "Speed"): a `get` or
/// `remember` of a `Codable & Sendable` value whose stored bytes are the very bytes decoded
/// last time returns that decoded value instead of decoding the JSON again (decoding a 4 KiB
/// value costs several microseconds; comparing its bytes, well under one).
///
/// The stored bytes are always read first (the input digest is checked and a swept or
/// replaced value is never answered from here), and a value is reused only while the bytes
/// are equal, so the answer is what decoding would give — for a type whose `init(from:)`
/// depends only on the bytes, which is what `Decodable` is for. Values enter only by being
/// decoded (a value just `put` is not cached: its decoded form may differ from it, for example
/// a `Date`'s precision). Bounded: at most `bytesMax` stored bytes and `countMax` values; past
/// either, older entries are dropped (the cache only saves work, it never holds state).
public final class MemoDecodedCache: Sendable {
    struct Key: Hashable {
        var key: MemoKey
        var type: ObjectIdentifier
    }

    private struct Entry {
        var bytes: [UInt8]
        var value: any Sendable
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var bytes = 0
    }

    public let bytesMax: Int
    public let countMax: Int
    private let state = Mutex(State())

    public init(bytesMax: Int = 16 << 20, countMax: Int = 16_384) {
        self.bytesMax = max(0, bytesMax)
        self.countMax = max(0, countMax)
    }

    /// The value decoded from exactly `bytes` for `key`, if it is still here.
    func value<T: Sendable>(_ key: Key, bytes: [UInt8], as type: T.Type) -> T? {
        state.withLock { state -> T? in
            guard let entry = state.entries[key], Self.same(entry.bytes, bytes) else { return nil }
            return entry.value as? T
        }
    }

    /// Byte-for-byte equality with one `memcmp` (a 4 KiB value compares in well under a
    /// microsecond; `Array.==` goes element by element).
    private static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { x in
            b.withUnsafeBytes { y in
                guard let p = x.baseAddress, let q = y.baseAddress else { return true }
                return p == q || memcmp(p, q, x.count) == 0
            }
        }
    }

    /// Keeps `value`, decoded from `bytes`, for `key` (replacing what the key held).
    func remember<T: Sendable>(_ key: Key, bytes: [UInt8], value: T) {
        let cost = bytes.count
        guard cost <= bytesMax, countMax > 0 else { return }
        state.withLock { state in
            if let old = state.entries.removeValue(forKey: key) { state.bytes -= old.bytes.count }
            while !state.entries.isEmpty, state.bytes + cost > bytesMax || state.entries.count >= countMax {
                let dropped = state.entries.remove(at: state.entries.startIndex)
                state.bytes -= dropped.value.bytes.count
            }
            state.entries[key] = Entry(bytes: bytes, value: value)
            state.bytes += cost
        }
    }

    /// Values and stored bytes held now (tests).
    var usage: (count: Int, bytes: Int) { state.withLock { ($0.entries.count, $0.bytes) } }
}

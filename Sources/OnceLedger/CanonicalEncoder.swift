import Foundation
import OnceLedgerFormat

/// A canonical binary encoding of `Encodable` values, for params fingerprints and
/// derived idempotency keys. It depends on no encoder settings and on no
/// dictionary or set iteration order (`Spec/FORMAT.md` §9.2):
///
/// | value | bytes |
/// | --- | --- |
/// | nil | `00` |
/// | Bool | `01` b |
/// | signed or unsigned integer that fits Int64 | `02` i64 LE |
/// | unsigned integer above Int64.max | `03` u64 LE |
/// | Float/Double | `04` IEEE-754 binary64 bits LE (−0 as +0, every NaN as 0x7ff8000000000000) |
/// | String | `05` u32 LE length, UTF-8 in Unicode NFC |
/// | keyed container | `06` u32 count, then (key as String, value) sorted by the key's bytes |
/// | unkeyed container | `07` u32 count, then values in order |
/// | Set, or Dictionary whose keys are not String/Int | `08` u32 count, then elements (a dictionary element is key ‖ value) sorted by their bytes |
///
/// Dictionaries with String or Int keys encode as keyed containers (sorted by key).
public enum CanonicalEncoding {
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let root = Node()
        let encoder = NodeEncoder(node: root, codingPath: [])
        try encoder.encodeValue(value)
        var out: [UInt8] = []
        root.serialize(into: &out)
        return out
    }

    final class Node {
        enum Kind {
            case empty
            case null
            case bool(Bool)
            case int(Int64)
            case uint(UInt64)
            case double(Double)
            case string(String)
            case keyed([String: Node])
            case unkeyed([Node])
        }
        var kind: Kind = .empty
        /// Set for Dictionary/Set values: element order carries no meaning.
        var unordered = false

        func serialize(into out: inout [UInt8]) {
            func u32(_ n: Int) { withUnsafeBytes(of: UInt32(truncatingIfNeeded: n).littleEndian) { out.append(contentsOf: $0) } }
            func string(_ text: String) {
                let bytes = Array(text.precomposedStringWithCanonicalMapping.utf8)
                out.append(5)
                u32(bytes.count)
                out.append(contentsOf: bytes)
            }
            switch kind {
            case .empty, .null:
                out.append(0)
            case .bool(let value):
                out.append(1)
                out.append(value ? 1 : 0)
            case .int(let value):
                out.append(2)
                withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
            case .uint(let value):
                if value <= UInt64(Int64.max) {
                    out.append(2)
                    withUnsafeBytes(of: Int64(value).littleEndian) { out.append(contentsOf: $0) }
                } else {
                    out.append(3)
                    withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
                }
            case .double(let value):
                out.append(4)
                let bits: UInt64 = value.isNaN ? 0x7ff8_0000_0000_0000 : (value == 0 ? 0 : value.bitPattern)
                withUnsafeBytes(of: bits.littleEndian) { out.append(contentsOf: $0) }
            case .string(let text):
                string(text)
            case .keyed(let children):
                // Also Dictionaries with String or Int keys: sorting by key makes them canonical.
                out.append(6)
                u32(children.count)
                // Sorted by the bytes actually written (NFC), so a key's normalization form
                // cannot change its position.
                let sorted = children.map { (bytes: Array($0.key.precomposedStringWithCanonicalMapping.utf8), node: $0.value) }
                    .sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }
                for (key, child) in sorted {
                    out.append(5)
                    u32(key.count)
                    out.append(contentsOf: key)
                    child.serialize(into: &out)
                }
            case .unkeyed(let children):
                if unordered {
                    var elements: [[UInt8]] = children.map { child in
                        var element: [UInt8] = []
                        child.serialize(into: &element)
                        return element
                    }
                    // A Dictionary with other key types encodes key, value, key, value…
                    if children.count % 2 == 0, pairHint {
                        elements = stride(from: 0, to: elements.count, by: 2).map { elements[$0] + elements[$0 + 1] }
                    }
                    out.append(8)
                    u32(elements.count)
                    for element in elements.sorted(by: { $0.lexicographicallyPrecedes($1) }) { out.append(contentsOf: element) }
                } else {
                    out.append(7)
                    u32(children.count)
                    for child in children { child.serialize(into: &out) }
                }
            }
        }

        /// For unordered unkeyed containers: elements are (key, value) pairs (a Dictionary).
        var pairHint = false
    }

    struct NodeEncoder: Encoder {
        let node: Node
        let codingPath: [any CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func encodeValue<T: Encodable>(_ value: T) throws {
            let style = Mirror(reflecting: value).displayStyle
            if style == .dictionary || style == .set {
                node.unordered = true
                node.pairHint = style == .dictionary
            }
            try value.encode(to: self)
        }

        func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
            if case .keyed = node.kind {} else { node.kind = .keyed([:]) }
            return KeyedEncodingContainer(KeyedContainer<Key>(node: node, codingPath: codingPath))
        }

        func unkeyedContainer() -> any UnkeyedEncodingContainer {
            if case .unkeyed = node.kind {} else { node.kind = .unkeyed([]) }
            return UnkeyedContainer(node: node, codingPath: codingPath)
        }

        func singleValueContainer() -> any SingleValueEncodingContainer {
            SingleContainer(node: node, codingPath: codingPath)
        }
    }

    struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let node: Node
        let codingPath: [any CodingKey]

        private func child(_ key: any CodingKey) -> Node {
            guard case .keyed(var children) = node.kind else { return Node() }
            let name = key.stringValue
            if let existing = children[name] { return existing }
            let created = Node()
            children[name] = created
            node.kind = .keyed(children)
            return created
        }

        mutating func encodeNil(forKey key: Key) throws { child(key).kind = .null }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            try NodeEncoder(node: child(key), codingPath: codingPath + [key]).encodeValue(value)
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
            -> KeyedEncodingContainer<NestedKey>
        {
            NodeEncoder(node: child(key), codingPath: codingPath + [key]).container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            NodeEncoder(node: child(key), codingPath: codingPath + [key]).unkeyedContainer()
        }
        mutating func superEncoder() -> any Encoder {
            NodeEncoder(node: child(SuperKey()), codingPath: codingPath)
        }
        mutating func superEncoder(forKey key: Key) -> any Encoder {
            NodeEncoder(node: child(key), codingPath: codingPath + [key])
        }
    }

    struct SuperKey: CodingKey {
        var stringValue: String { "super" }
        var intValue: Int? { nil }
        init() {}
        init?(stringValue: String) { nil }
        init?(intValue: Int) { nil }
    }

    struct IndexKey: CodingKey {
        var stringValue: String { "\(index)" }
        var intValue: Int? { index }
        let index: Int
        init(_ index: Int) { self.index = index }
        init?(stringValue: String) { nil }
        init?(intValue: Int) { self.index = intValue }
    }

    struct UnkeyedContainer: UnkeyedEncodingContainer {
        let node: Node
        let codingPath: [any CodingKey]
        var count: Int {
            if case .unkeyed(let children) = node.kind { return children.count }
            return 0
        }

        private func append() -> Node {
            let created = Node()
            if case .unkeyed(var children) = node.kind {
                children.append(created)
                node.kind = .unkeyed(children)
            }
            return created
        }

        mutating func encodeNil() throws { append().kind = .null }
        mutating func encode<T: Encodable>(_ value: T) throws {
            let index = count
            try NodeEncoder(node: append(), codingPath: codingPath + [IndexKey(index)]).encodeValue(value)
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type)
            -> KeyedEncodingContainer<NestedKey>
        {
            NodeEncoder(node: append(), codingPath: codingPath).container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
            NodeEncoder(node: append(), codingPath: codingPath).unkeyedContainer()
        }
        mutating func superEncoder() -> any Encoder { NodeEncoder(node: append(), codingPath: codingPath) }
    }

    struct SingleContainer: SingleValueEncodingContainer {
        let node: Node
        let codingPath: [any CodingKey]
        mutating func encodeNil() throws { node.kind = .null }
        mutating func encode(_ value: Bool) throws { node.kind = .bool(value) }
        mutating func encode(_ value: String) throws { node.kind = .string(value) }
        mutating func encode(_ value: Double) throws { node.kind = .double(value) }
        mutating func encode(_ value: Float) throws { node.kind = .double(Double(value)) }
        mutating func encode(_ value: Int) throws { node.kind = .int(Int64(value)) }
        mutating func encode(_ value: Int8) throws { node.kind = .int(Int64(value)) }
        mutating func encode(_ value: Int16) throws { node.kind = .int(Int64(value)) }
        mutating func encode(_ value: Int32) throws { node.kind = .int(Int64(value)) }
        mutating func encode(_ value: Int64) throws { node.kind = .int(value) }
        mutating func encode(_ value: UInt) throws { node.kind = .uint(UInt64(value)) }
        mutating func encode(_ value: UInt8) throws { node.kind = .uint(UInt64(value)) }
        mutating func encode(_ value: UInt16) throws { node.kind = .uint(UInt64(value)) }
        mutating func encode(_ value: UInt32) throws { node.kind = .uint(UInt64(value)) }
        mutating func encode(_ value: UInt64) throws { node.kind = .uint(value) }
        mutating func encode<T: Encodable>(_ value: T) throws {
            try NodeEncoder(node: node, codingPath: codingPath).encodeValue(value)
        }
    }
}

// Test scaffolding (no tests here): reads the Swift code blocks of a document in this repository,
// so each example test can check that the blocks it runs are the ones the document prints.
import Foundation

enum DocumentBlocks {
    /// The repository's root, from this test file's path.
    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// The text of `path` (relative to the repository's root).
    static func text(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// The ```swift blocks of `text`, in order. With `section` (a heading line, e.g. "## Memo"),
    /// only those after that heading and before the next heading of the same or a higher level.
    static func swiftBlocks(in text: String, section heading: String? = nil) -> [String]? {
        var body = Substring(text)
        var stopPrefix: String?
        if let heading {
            guard let range = text.range(of: heading + "\n") ?? text.range(of: heading) else { return nil }
            body = text[range.upperBound...]
            let level = heading.prefix { $0 == "#" }
            stopPrefix = String(level) + " "
        }
        var blocks: [String] = []
        var current: [Substring]?
        for line in body.split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, let stopPrefix, line.hasPrefix("#") {
                let lineLevel = line.prefix { $0 == "#" }
                if lineLevel.count <= stopPrefix.count - 1 { break }
            }
            if current == nil, line.hasPrefix("```swift") {
                current = []
            } else if let lines = current, line.hasPrefix("```") {
                blocks.append(lines.joined(separator: "\n"))
                current = nil
            } else if current != nil {
                current?.append(line)
            }
        }
        return blocks
    }
}

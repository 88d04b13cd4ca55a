// Proves the layering and platform rules of ARCHITECTURE.md §1 hold in the source tree, by reading
// every Swift file under Sources/: no library module imports a module above it (Format imports no
// I/O and not Foundation; Log never imports OnceLedger; no library imports the test support, the
// CLI's packages or SQLite), no file pretends to support Darwin or Musl, and every library target
// that imports Glibc stops the build off Linux with an `#error` naming Linux.
import Foundation
import Testing

@Suite struct SourceLayoutTests {
    static let sources = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Sources")

    /// Modules each library target must never import: the ones above it, and what only
    /// tools and tests may use.
    static let forbidden: [String: Set<String>] = [
        "OnceLedgerFormat": ["OnceLedgerLog", "OnceLedger", "OnceLedgerTestSupport", "COnceSupport", "Foundation", "Glibc"],
        "OnceLedgerLog": ["OnceLedger", "OnceLedgerTestSupport"],
        "OnceLedger": ["OnceLedgerTestSupport"],
        "OnceLedgerTestSupport": [],
    ]
    static let toolsOnly: Set<String> = ["ArgumentParser", "CSQLite", "CZlib", "onceledger"]

    /// The Swift files of one target, with their text.
    static func files(of target: String) throws -> [(name: String, text: String)] {
        let directory = sources.appendingPathComponent(target)
        guard let walker = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil) else { return [] }
        var found: [(String, String)] = []
        for case let url as URL in walker where url.pathExtension == "swift" {
            found.append((url.lastPathComponent, try String(contentsOf: url, encoding: .utf8)))
        }
        return found
    }

    /// The modules a file imports (`import X`, `@_exported import X`, `@testable import X`, …).
    static func imports(_ text: String) -> Set<String> {
        var modules: Set<String> = []
        for line in text.split(separator: "\n") {
            let words = line.trimmingCharacters(in: .whitespaces).split(separator: " ")
            guard let index = words.firstIndex(of: "import"), words[..<index].allSatisfy({ $0.hasPrefix("@") }),
                  index + 1 < words.count
            else { continue }
            modules.insert(String(words[index + 1].split(separator: ".")[0]))
        }
        return modules
    }

    @Test(arguments: ["OnceLedgerFormat", "OnceLedgerLog", "OnceLedger", "OnceLedgerTestSupport"])
    func importsPointDownTheLayers(target: String) throws {
        let files = try SourceLayoutTests.files(of: target)
        #expect(!files.isEmpty, "no Swift files under Sources/\(target)")
        let banned = SourceLayoutTests.forbidden[target, default: []].union(SourceLayoutTests.toolsOnly)
        for file in files {
            let wrong = SourceLayoutTests.imports(file.text).intersection(banned)
            #expect(wrong.isEmpty, "Sources/\(target)/\(file.name) imports \(wrong.sorted()), which its layer may not (ARCHITECTURE.md §1)")
        }
    }

    @Test(arguments: ["OnceLedgerFormat", "OnceLedgerLog", "OnceLedger", "OnceLedgerTestSupport"])
    func linuxOnlyIsSaidNotPretended(target: String) throws {
        let files = try SourceLayoutTests.files(of: target)
        for file in files {
            for fiction in ["canImport(Darwin)", "canImport(Musl)", "import Darwin", "import Musl"] {
                let pretends = file.text.contains(fiction)
                #expect(!pretends, "Sources/\(target)/\(file.name) has \(fiction)")
            }
        }
        let importsGlibc = files.contains { SourceLayoutTests.imports($0.text).contains("Glibc") }
        let guarded = files.contains { $0.text.contains("#if !os(Linux)\n#error(\"") && $0.text.contains("Linux (glibc) only") }
        #expect(!importsGlibc || guarded, "Sources/\(target) imports Glibc but has no `#if !os(Linux) #error(…)`")
    }
}

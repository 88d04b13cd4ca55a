import Foundation

/// A plain-text table: the first column left-aligned, the others right-aligned,
/// columns separated by two spaces. Used by the bench's tables.
struct TextTable {
    var header: [String]
    var rows: [[String]] = []
    /// Columns (by index) to align left; column 0 always is.
    var leftAligned: Set<Int> = [0]

    init(_ header: [String], leftAligned: Set<Int> = [0]) {
        self.header = header
        self.leftAligned = leftAligned.union([0])
    }

    mutating func add(_ row: [String]) { rows.append(row) }

    func render() -> String {
        let all = [header] + rows
        let columns = all.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in all {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        func line(_ row: [String]) -> String {
            var cells: [String] = []
            for index in 0..<columns {
                let cell = index < row.count ? row[index] : ""
                let pad = String(repeating: " ", count: widths[index] - cell.count)
                cells.append(leftAligned.contains(index) ? cell + pad : pad + cell)
            }
            var text = cells.joined(separator: "  ")
            while text.hasSuffix(" ") { text.removeLast() }
            return text
        }
        var lines = [line(header)]
        lines.append(String(repeating: "-", count: widths.reduce(0, +) + 2 * max(0, columns - 1)))
        lines += rows.map(line)
        return lines.joined(separator: "\n")
    }
}

/// A benchmark step that failed outside the engine (setup, SQLite, files).
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Where something was written: a profile file (or "<inline>"), 1-based line and column.
public struct SourceLocation: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var source: String
    public var line: Int
    public var column: Int

    public init(source: String, line: Int, column: Int) {
        self.source = source
        self.line = line
        self.column = column
    }

    public var description: String { "\(source):\(line):\(column)" }
}

/// A problem in a profile, located: `default.json:12:5: unknown key "netwrok" (did you mean "network"?)`.
/// `line` and `column` are 0 when the problem has no place in a file (for example a file that cannot be read).
public struct ProfileError: Error, CustomStringConvertible, Equatable, Sendable {
    public var source: String
    public var line: Int
    public var column: Int
    public var message: String

    public init(source: String, line: Int, column: Int, message: String) {
        self.source = source
        self.line = line
        self.column = column
        self.message = message
    }

    public init(_ location: SourceLocation, _ message: String) {
        self.init(source: location.source, line: location.line, column: location.column, message: message)
    }

    public var description: String {
        line > 0 ? "\(source):\(line):\(column): \(message)" : "\(source): \(message)"
    }
}

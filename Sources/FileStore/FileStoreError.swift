#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An error from the file store. Database errors from GRDB are passed through unchanged, since they already
/// carry the SQL and SQLite's message.
public struct FileStoreError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Code: String, Sendable, Equatable {
        /// The content is larger than the caller's `maxBytes`.
        case tooLarge = "too_large"
        /// An argument the store cannot accept (unknown `source` or `kind`, negative limit, ...).
        case invalidArgument = "invalid_argument"
        /// A system call on the data directory or a blob failed.
        case io
    }

    public let code: Code
    public let message: String
    /// The `errno` of the failed system call, for `.io`.
    public let errno: Int32?

    public init(code: Code, message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String {
        guard let errno else { return message }
        return "\(message): \(String(cString: strerror(errno)))"
    }

    static func tooLarge(limit: Int64) -> FileStoreError {
        FileStoreError(code: .tooLarge, message: "file is larger than the limit of \(limit) bytes; nothing was stored")
    }

    static func invalid(_ message: String) -> FileStoreError {
        FileStoreError(code: .invalidArgument, message: message)
    }

    static func io(_ what: String, errno code: Int32) -> FileStoreError {
        FileStoreError(code: .io, message: what, errno: code)
    }
}

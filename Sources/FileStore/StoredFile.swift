import Foundation
import GRDB
import InterpreterCore

/// The metadata of one stored file: a row of table `file`, whose blob is `files/<id>` in the data directory.
///
/// The coding keys are snake_case so that the same names serve as SQL columns and as the JSON keys of the
/// HTTP API (`mime_type`, `size_bytes`, ...).
public struct StoredFile: Codable, Sendable, Equatable, Hashable {
    /// Lowercase UUID; also the blob's file name.
    public var id: String
    /// The name shown to users (`chart.png`).
    public var name: String
    /// Where the file lives inside the sandbox (`/mnt/data/chart.png`), or "" when it never did (a figure).
    public var path: String
    public var mimeType: String
    public var sizeBytes: Int64
    /// Lowercase hex SHA-256 of the content.
    public var sha256: String
    public var createdAt: Date
    /// nil: kept until deleted.
    public var expiresAt: Date?
    public var sessionId: String?
    /// "user" (uploaded) or "assistant" (produced by code).
    public var source: String
    /// "file" (a file from /mnt/data or an upload) or "display" (a captured figure).
    public var kind: String

    public init(id: String, name: String, path: String, mimeType: String, sizeBytes: Int64, sha256: String,
                createdAt: Date, expiresAt: Date?, sessionId: String?, source: String, kind: String) {
        self.id = id
        self.name = name
        self.path = path
        self.mimeType = mimeType
        self.sizeBytes = sizeBytes
        self.sha256 = sha256
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.sessionId = sessionId
        self.source = source
        self.kind = kind
    }

    public enum CodingKeys: String, CodingKey {
        case id, name, path, sha256, source, kind
        case mimeType = "mime_type"
        case sizeBytes = "size_bytes"
        case createdAt = "created_at"
        case expiresAt = "expires_at"
        case sessionId = "session_id"
    }

    /// The table's columns, for GRDB query requests.
    public enum Columns {
        public static let id = Column(CodingKeys.id)
        public static let name = Column(CodingKeys.name)
        public static let path = Column(CodingKeys.path)
        public static let mimeType = Column(CodingKeys.mimeType)
        public static let sizeBytes = Column(CodingKeys.sizeBytes)
        public static let sha256 = Column(CodingKeys.sha256)
        public static let createdAt = Column(CodingKeys.createdAt)
        public static let expiresAt = Column(CodingKeys.expiresAt)
        public static let sessionId = Column(CodingKeys.sessionId)
        public static let source = Column(CodingKeys.source)
        public static let kind = Column(CodingKeys.kind)
    }

    public static let sources: Set<String> = ["user", "assistant"]
    public static let kinds: Set<String> = ["file", "display"]

    /// Whether the file has expired at `now` (an expired row may still exist until the next sweep).
    public func isExpired(at now: Date = Date()) -> Bool {
        guard let expiresAt else { return false }
        return StoredFile.milliseconds(expiresAt) <= StoredFile.milliseconds(now)
    }

    /// The shape the execution result carries (`InterpreterCore.StoredFileRef`).
    public func ref(url: String? = nil, storePath: String? = nil) -> StoredFileRef {
        StoredFileRef(id: id, name: name, path: path, mimeType: mimeType, sizeBytes: sizeBytes, sha256: sha256,
                      url: url, source: source, storePath: storePath)
    }
}

extension StoredFile: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "file"

    // Dates are stored as integer milliseconds since 1970: they compare as integers in SQL (expiry), and
    // records carry dates already truncated to the millisecond (`normalized`), so a record read back is equal
    // to the one `store` returned.
    public static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy {
        .millisecondsSince1970
    }

    public static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy {
        .millisecondsSince1970
    }

    /// The value GRDB's `.millisecondsSince1970` strategy writes for `date`.
    static func milliseconds(_ date: Date) -> Int64 {
        Int64(floor(1000.0 * date.timeIntervalSince1970))
    }

    /// The date GRDB's `.millisecondsSince1970` strategy reads from `milliseconds`.
    static func date(milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: TimeInterval(milliseconds) / 1000.0)
    }

    /// The date as it will read back from the database.
    static func normalized(_ date: Date) -> Date {
        self.date(milliseconds: milliseconds(date))
    }
}

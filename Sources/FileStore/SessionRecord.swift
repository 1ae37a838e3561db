import Foundation
import GRDB

/// The metadata of a stateful session (an OpenAI "container"): a row of table `session`. Its files are rows of
/// `file` with this `session_id`; its `/mnt/data` lives in `<data>/sessions/<id>` while the session does.
///
/// The interpreter itself is not persisted: after a restart of the service a session keeps its files and starts a
/// fresh interpreter on its next execution.
public struct SessionRecord: Codable, Sendable, Equatable {
    /// Lowercase UUID.
    public var id: String
    public var name: String?
    /// The sandbox profile every execution of the session runs under.
    public var profile: String
    public var createdAt: Date
    public var lastActiveAt: Date
    /// Idle time after which the session expires (its interpreter is stopped and its files removed).
    public var idleTimeoutSeconds: Int
    public var executionCount: Int
    /// Memory the session's code may use, when it asked for other than its profile's (a container's
    /// `memory_limit`).
    public var memoryBytes: Int64?

    public init(id: String, name: String?, profile: String, createdAt: Date, lastActiveAt: Date,
                idleTimeoutSeconds: Int, executionCount: Int = 0, memoryBytes: Int64? = nil) {
        self.id = id
        self.name = name
        self.profile = profile
        self.createdAt = createdAt
        self.lastActiveAt = lastActiveAt
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.executionCount = executionCount
        self.memoryBytes = memoryBytes
    }

    public var expiresAt: Date { lastActiveAt.addingTimeInterval(TimeInterval(idleTimeoutSeconds)) }

    public func isExpired(at now: Date = Date()) -> Bool { expiresAt <= now }

    public enum CodingKeys: String, CodingKey {
        case id, name, profile
        case createdAt = "created_at"
        case lastActiveAt = "last_active_at"
        case idleTimeoutSeconds = "idle_timeout_s"
        case executionCount = "execution_count"
        case memoryBytes = "memory_bytes"
    }

    public enum Columns {
        public static let id = Column(CodingKeys.id)
        public static let createdAt = Column(CodingKeys.createdAt)
        public static let lastActiveAt = Column(CodingKeys.lastActiveAt)
        public static let idleTimeoutSeconds = Column(CodingKeys.idleTimeoutSeconds)
    }
}

extension SessionRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "session"

    public static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy {
        .millisecondsSince1970
    }

    public static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy {
        .millisecondsSince1970
    }
}

extension FileStore {
    static func registerSessionMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v2-sessions") { db in
            try db.execute(sql: """
                CREATE TABLE session (
                    id TEXT NOT NULL PRIMARY KEY,
                    name TEXT,
                    profile TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    last_active_at INTEGER NOT NULL,
                    idle_timeout_s INTEGER NOT NULL,
                    execution_count INTEGER NOT NULL DEFAULT 0
                );
                ALTER TABLE file ADD COLUMN current INTEGER NOT NULL DEFAULT 1;
                CREATE INDEX file_session_path ON file(session_id, path);
                """)
        }
        migrator.registerMigration("v3-session-memory") { db in
            try db.execute(sql: "ALTER TABLE session ADD COLUMN memory_bytes INTEGER")
        }
    }

    // MARK: Sessions

    /// Inserts a new session, active now.
    public func createSession(name: String?, profile: String, idleTimeoutSeconds: Int, memoryBytes: Int64? = nil) throws -> SessionRecord {
        let now = StoredFile.normalized(Date())
        let record = SessionRecord(id: UUID().uuidString.lowercased(), name: name, profile: profile, createdAt: now,
                                   lastActiveAt: now, idleTimeoutSeconds: idleTimeoutSeconds, memoryBytes: memoryBytes)
        try database.write { db in try record.insert(db) }
        return record
    }

    /// The session, or nil when the id is unknown, malformed or the session has expired.
    public func session(id: String, now: Date = Date()) throws -> SessionRecord? {
        guard let id = Self.canonicalID(id) else { return nil }
        let record = try database.read { db in try SessionRecord.fetchOne(db, key: id) }
        guard let record, !record.isExpired(at: now) else { return nil }
        return record
    }

    /// Unexpired sessions, oldest first.
    public func sessions(now: Date = Date()) throws -> [SessionRecord] {
        try database.read { db in
            try SessionRecord.order(SessionRecord.Columns.createdAt, SessionRecord.Columns.id).fetchAll(db)
        }.filter { !$0.isExpired(at: now) }
    }

    /// Marks the session active now (and counts an execution when `execution` is true).
    @discardableResult
    public func touchSession(id: String, execution: Bool = false, now: Date = Date()) throws -> SessionRecord? {
        guard let id = Self.canonicalID(id) else { return nil }
        return try database.write { db in
            guard var record = try SessionRecord.fetchOne(db, key: id) else { return nil }
            record.lastActiveAt = StoredFile.normalized(now)
            if execution { record.executionCount += 1 }
            try record.update(db)
            return record
        }
    }

    /// Sessions idle past their timeout at `now`, whether or not they were already removed from view.
    public func expiredSessions(now: Date = Date()) throws -> [SessionRecord] {
        try database.read { db in try SessionRecord.fetchAll(db) }.filter { $0.isExpired(at: now) }
    }

    /// Deletes the session row and every file row of the session (then their blobs). Returns false when there
    /// was no such session.
    public func deleteSession(id: String) throws -> Bool {
        guard let id = Self.canonicalID(id) else { return false }
        let (deleted, fileIds) = try database.write { db -> (Bool, [String]) in
            let ids = try String.fetchAll(db, sql: "SELECT id FROM file WHERE session_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM file WHERE session_id = ?", arguments: [id])
            return (try SessionRecord.deleteOne(db, key: id), ids)
        }
        for fileId in fileIds { unlink(filesDirectory + "/" + fileId) }
        return deleted
    }

    // MARK: Session files

    /// The files currently in a session's /mnt/data as the store knows them: the latest version of each path,
    /// oldest first. Captured figures (kind "display") are not in /mnt/data and are not listed.
    public func currentFiles(sessionId: String) throws -> [StoredFile] {
        let now = StoredFile.milliseconds(Date())
        return try database.read { db in
            try StoredFile.fetchAll(db, sql: """
                SELECT * FROM file WHERE session_id = ? AND kind = 'file' AND current = 1
                  AND (expires_at IS NULL OR expires_at > ?)
                ORDER BY created_at, id
                """, arguments: [sessionId, now])
        }
    }

    /// Makes `file` the current version of its path in its session: older versions stay retrievable by id (an
    /// earlier result links them) but are no longer listed.
    public func makeCurrent(_ file: StoredFile) throws {
        guard let sessionId = file.sessionId else { return }
        try database.write { db in
            try db.execute(sql: "UPDATE file SET current = 0 WHERE session_id = ? AND path = ? AND id != ?",
                           arguments: [sessionId, file.path, file.id])
            try db.execute(sql: "UPDATE file SET current = 1 WHERE id = ?", arguments: [file.id])
        }
    }

    /// Marks the current version of `path` in the session as gone from /mnt/data (deleted by code or by a user).
    public func retire(sessionId: String, path: String) throws {
        try database.write { db in
            try db.execute(sql: "UPDATE file SET current = 0 WHERE session_id = ? AND path = ?",
                           arguments: [sessionId, path])
        }
    }
}

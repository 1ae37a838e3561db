import FileStore
import Foundation
import GRDB
import InterpreterCore
import Sandbox

/// The tools layer's tables, in the engine's database: conversations (each mapped to the session its code runs
/// in) and the messages of `codeinterp chat` conversations.
public struct ToolsDatabase: Sendable {
    public let database: DatabasePool

    public init(store: FileStore) throws {
        database = store.database
        var migrator = DatabaseMigrator()
        // Never edit a migration that has shipped: add a new one (names start with "tools-").
        migrator.registerMigration("tools-v1-conversations") { db in
            try db.execute(sql: """
                CREATE TABLE tool_conversation (
                    id TEXT NOT NULL PRIMARY KEY,
                    session_id TEXT,
                    created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL
                );
                CREATE TABLE tool_chat_message (
                    conversation_id TEXT NOT NULL REFERENCES tool_conversation(id) ON DELETE CASCADE,
                    position INTEGER NOT NULL,
                    message TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    PRIMARY KEY (conversation_id, position)
                );
                """)
        }
        try migrator.migrate(database)
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// The session a conversation is mapped to (it may have expired since), or nil for an unknown conversation.
    public func sessionId(conversation: String) throws -> String?? {
        try database.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT session_id FROM tool_conversation WHERE id = ?",
                                             arguments: [conversation]) else { return nil }
            return .some(row["session_id"] as String?)
        }
    }

    /// Creates the conversation if needed and maps it to `sessionId`.
    public func setSession(conversation: String, sessionId: String?) throws {
        let now = Self.now()
        try database.write { db in
            try db.execute(sql: """
                INSERT INTO tool_conversation (id, session_id, created_at, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET session_id = excluded.session_id, updated_at = excluded.updated_at
                """, arguments: [conversation, sessionId, now, now])
        }
    }

    public func conversationExists(_ id: String) throws -> Bool {
        try database.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM tool_conversation WHERE id = ?)", arguments: [id]) ?? false
        }
    }

    // MARK: Chat messages (Chat Completions message objects)

    public func appendMessage(conversation: String, _ message: JSONValue) throws {
        let now = Self.now()
        try database.write { db in
            try db.execute(sql: """
                INSERT INTO tool_conversation (id, session_id, created_at, updated_at) VALUES (?, NULL, ?, ?)
                ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at
                """, arguments: [conversation, now, now])
            let next = try Int.fetchOne(db, sql: "SELECT COALESCE(MAX(position), -1) + 1 FROM tool_chat_message WHERE conversation_id = ?",
                                        arguments: [conversation]) ?? 0
            try db.execute(sql: "INSERT INTO tool_chat_message (conversation_id, position, message, created_at) VALUES (?, ?, ?, ?)",
                           arguments: [conversation, next, message.serialized(), now])
        }
    }

    public func messages(conversation: String) throws -> [JSONValue] {
        let texts = try database.read { db in
            try String.fetchAll(db, sql: "SELECT message FROM tool_chat_message WHERE conversation_id = ? ORDER BY position",
                                arguments: [conversation])
        }
        return try texts.map { try JSONValue.parse($0) }
    }
}

/// What running code in a conversation's session needs to say about the session.
public struct SessionBinding: Sendable, Equatable {
    public var sessionId: String
    /// Said to the model when the session is not the one it used before (expired, deleted, unknown).
    public var notice: String?
}

/// Maps conversations to sessions: a session is created on a conversation's first call, and again when the
/// mapped one has expired or was deleted.
public actor ConversationSessions {
    public nonisolated let executor: any CodeExecutor
    public nonisolated let tables: ToolsDatabase
    let profile: String
    /// Sessions being made, by conversation: a second call of the same conversation meanwhile gets the same one.
    private var opening: [String: Task<SessionBinding, any Error>] = [:]

    public init(executor: any CodeExecutor, profile: String = "default") throws {
        self.executor = executor
        self.profile = profile
        tables = try ToolsDatabase(store: executor.store)
    }

    /// The live session of `conversation`, created if there is none (or the previous one is gone).
    /// `memoryBytes`: the memory limit of a session created now (a container's `memory_limit`).
    public func session(conversation: String, memoryBytes: Int64? = nil) async throws -> SessionBinding {
        if let pending = opening[conversation] { return try await pending.value }
        let mapped = try tables.sessionId(conversation: conversation)
        if case .some(.some(let id)) = mapped, try executor.session(id: id) != nil {
            return SessionBinding(sessionId: id, notice: nil)
        }
        let (executor, tables, profile) = (self.executor, self.tables, self.profile)
        let task = Task {
            let record = try await executor.openSession(SessionOptions(name: "conversation " + conversation, profile: profile,
                                                                       memoryBytes: memoryBytes))
            try tables.setSession(conversation: conversation, sessionId: record.id)
            var notice: String? = nil
            if case .some(.some) = mapped {
                notice = "The previous session of this conversation has expired or was deleted: this code ran in a new, "
                    + "empty session. Variables, imports and files from earlier calls are gone; recreate what you need."
            }
            return SessionBinding(sessionId: record.id, notice: notice)
        }
        opening[conversation] = task
        defer { opening[conversation] = nil }
        return try await task.value
    }

    /// The session named by a model (an id an earlier result gave it), or a new one when that one is gone.
    public func session(named id: String?) async throws -> SessionBinding {
        if let id, try executor.session(id: id) != nil { return SessionBinding(sessionId: id.lowercased(), notice: nil) }
        let record = try await executor.openSession(SessionOptions(profile: profile))
        var notice = "This code ran in a new session, session_id \(record.id): pass it as session_id in later calls "
            + "to keep variables and files."
        if let id {
            notice = "Session \(id) does not exist (it expired or was deleted): this code ran in a new, empty session, "
                + "session_id \(record.id). Variables and files from earlier calls are gone; pass the new session_id "
                + "in later calls."
        }
        return SessionBinding(sessionId: record.id, notice: notice)
    }

    /// The session currently mapped to the conversation, if it is still alive (nothing is created).
    public func existingSession(conversation: String) throws -> String? {
        guard case .some(.some(let id)) = try tables.sessionId(conversation: conversation),
              try executor.session(id: id) != nil else { return nil }
        return id
    }
}

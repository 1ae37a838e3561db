import FileStore
import Foundation
import GRDB
import InterpreterCore

/// A stored response: its object (stored form: outputs kept, private keys included) and the input it was given.
public struct StoredResponse: Sendable {
    public var id: String
    public var createdAt: Int
    /// The first response of its `previous_response_id` chain (the key of the chain's automatic container).
    public var chainId: String
    public var previousResponseId: String?
    public var conversationId: String?
    public var object: JSONValue
    public var inputItems: [JSONValue]
    public var include: [String]
}

public struct StoredConversation: Sendable, Equatable {
    public var id: String
    public var createdAt: Int
    public var metadata: JSONValue

    public var json: JSONValue {
        ["id": .string(id), "object": "conversation", "created_at": .int(createdAt), "metadata": metadata]
    }
}

/// The Responses and Conversations tables, in the engine's SQLite database. A response is written together with
/// the items it adds to its conversation, in one transaction: it is stored with its items or not at all.
public struct ResponsesStore: Sendable {
    public let database: DatabasePool

    public init(store: FileStore) throws {
        database = store.database
        var migrator = DatabaseMigrator()
        // Never edit a migration that has shipped: add a new one (names start with "responses-").
        migrator.registerMigration("responses-v1") { db in
            try db.execute(sql: """
                CREATE TABLE responses_conversation (
                    id TEXT NOT NULL PRIMARY KEY,
                    created_at INTEGER NOT NULL,
                    metadata TEXT NOT NULL
                );
                CREATE TABLE responses_conversation_item (
                    conversation_id TEXT NOT NULL REFERENCES responses_conversation(id) ON DELETE CASCADE,
                    position INTEGER NOT NULL,
                    item_id TEXT NOT NULL,
                    item TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    PRIMARY KEY (conversation_id, position)
                );
                CREATE INDEX responses_conversation_item_by_id ON responses_conversation_item(conversation_id, item_id);
                CREATE TABLE responses_response (
                    id TEXT NOT NULL PRIMARY KEY,
                    created_at INTEGER NOT NULL,
                    chain_id TEXT NOT NULL,
                    previous_response_id TEXT,
                    conversation_id TEXT,
                    object TEXT NOT NULL,
                    input_items TEXT NOT NULL,
                    include TEXT NOT NULL
                );
                """)
        }
        try migrator.migrate(database)
    }

    static func encode(_ items: [JSONValue]) -> String { JSONValue.array(items).serialized() }
    static func decode(_ text: String) throws -> [JSONValue] { try JSONValue.parse(text).arrayValue ?? [] }

    // MARK: Responses

    /// Stores a response and appends `conversationItems` to its conversation, atomically.
    public func save(_ response: StoredResponse?, conversationItems: [JSONValue], conversationId: String?) throws {
        try database.write { db in
            if let response {
                try db.execute(sql: """
                    INSERT INTO responses_response (id, created_at, chain_id, previous_response_id, conversation_id, object,
                                                    input_items, include)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [response.id, response.createdAt, response.chainId, response.previousResponseId,
                                     response.conversationId, response.object.serialized(), Self.encode(response.inputItems),
                                     Self.encode(response.include.map { .string($0) })])
            }
            if let conversationId, !conversationItems.isEmpty {
                try Self.append(db, conversation: conversationId, items: conversationItems)
            }
        }
    }

    public func response(id: String) throws -> StoredResponse? {
        try database.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM responses_response WHERE id = ?", arguments: [id]) else {
                return nil
            }
            return try StoredResponse(
                id: row["id"], createdAt: row["created_at"], chainId: row["chain_id"],
                previousResponseId: row["previous_response_id"], conversationId: row["conversation_id"],
                object: JSONValue.parse(row["object"] as String), inputItems: Self.decode(row["input_items"]),
                include: Self.decode(row["include"]).compactMap(\.stringValue))
        }
    }

    @discardableResult
    public func deleteResponse(id: String) throws -> Bool {
        try database.write { db in
            try db.execute(sql: "DELETE FROM responses_response WHERE id = ?", arguments: [id])
            return db.changesCount > 0
        }
    }

    /// The chain ending with `id`, oldest first (stops where a response of the chain was deleted).
    public func chain(endingWith id: String) throws -> [StoredResponse] {
        var out: [StoredResponse] = []
        var next: String? = id
        var seen = Set<String>()
        while let current = next, seen.insert(current).inserted, let stored = try response(id: current) {
            out.append(stored)
            next = stored.previousResponseId
        }
        return out.reversed()
    }

    // MARK: Conversations

    public func createConversation(metadata: JSONValue, items: [JSONValue]) throws -> StoredConversation {
        let conversation = StoredConversation(id: ResponseIDs.make("conv"), createdAt: Int(Date().timeIntervalSince1970),
                                              metadata: metadata)
        try database.write { db in
            try db.execute(sql: "INSERT INTO responses_conversation (id, created_at, metadata) VALUES (?, ?, ?)",
                           arguments: [conversation.id, conversation.createdAt, metadata.serialized()])
            try Self.append(db, conversation: conversation.id, items: items)
        }
        return conversation
    }

    public func conversation(id: String) throws -> StoredConversation? {
        try database.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM responses_conversation WHERE id = ?", arguments: [id]) else {
                return nil
            }
            return StoredConversation(id: row["id"], createdAt: row["created_at"],
                                      metadata: (try? JSONValue.parse(row["metadata"] as String)) ?? [:])
        }
    }

    /// Every conversation, oldest first.
    public func conversations() throws -> [StoredConversation] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM responses_conversation ORDER BY created_at, rowid").map { row in
                StoredConversation(id: row["id"], createdAt: row["created_at"],
                                   metadata: (try? JSONValue.parse(row["metadata"] as String)) ?? [:])
            }
        }
    }

    public func updateConversation(id: String, metadata: JSONValue) throws -> StoredConversation? {
        try database.write { db in
            try db.execute(sql: "UPDATE responses_conversation SET metadata = ? WHERE id = ?", arguments: [metadata.serialized(), id])
        }
        return try conversation(id: id)
    }

    @discardableResult
    public func deleteConversation(id: String) throws -> Bool {
        try database.write { db in
            try db.execute(sql: "DELETE FROM responses_conversation_item WHERE conversation_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM responses_conversation WHERE id = ?", arguments: [id])
            return db.changesCount > 0
        }
    }

    /// The conversation's items, oldest first.
    public func items(conversation id: String) throws -> [JSONValue] {
        let texts = try database.read { db in
            try String.fetchAll(db, sql: "SELECT item FROM responses_conversation_item WHERE conversation_id = ? ORDER BY position",
                                arguments: [id])
        }
        return try texts.map { try JSONValue.parse($0) }
    }

    public func appendItems(conversation id: String, items: [JSONValue]) throws {
        try database.write { db in try Self.append(db, conversation: id, items: items) }
    }

    public func deleteItem(conversation id: String, itemId: String) throws -> Bool {
        try database.write { db in
            try db.execute(sql: "DELETE FROM responses_conversation_item WHERE conversation_id = ? AND item_id = ?",
                           arguments: [id, itemId])
            return db.changesCount > 0
        }
    }

    static func append(_ db: Database, conversation: String, items: [JSONValue]) throws {
        var next = try Int.fetchOne(db, sql: "SELECT COALESCE(MAX(position), -1) + 1 FROM responses_conversation_item WHERE conversation_id = ?",
                                    arguments: [conversation]) ?? 0
        let now = Int(Date().timeIntervalSince1970)
        for item in items {
            try db.execute(sql: """
                INSERT INTO responses_conversation_item (conversation_id, position, item_id, item, created_at) VALUES (?, ?, ?, ?, ?)
                """, arguments: [conversation, next, item["id"]?.stringValue ?? ResponseIDs.make("item"), item.serialized(), now])
            next += 1
        }
    }
}

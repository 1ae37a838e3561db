import FileStore
import Foundation
import HTTPTypes
import Hummingbird
import InterpreterCore
import Sandbox

/// A session as the native API shows it.
struct SessionObject: Encodable {
    var id: String
    var object = "session"
    @EncodedAsNull var name: String?
    var profile: String
    var created_at: Int
    var last_active_at: Int
    var expires_at: Int
    var idle_timeout_s: Int
    var execution_count: Int

    init(_ s: SessionRecord) {
        id = s.id
        name = s.name
        profile = s.profile
        created_at = Int(s.createdAt.timeIntervalSince1970)
        last_active_at = Int(s.lastActiveAt.timeIntervalSince1970)
        expires_at = Int(s.expiresAt.timeIntervalSince1970)
        idle_timeout_s = s.idleTimeoutSeconds
        execution_count = s.executionCount
    }
}

/// OpenAI's `container` object: a container is a session (same id).
struct ContainerObject: Encodable {
    struct ExpiresAfter: Encodable {
        var anchor = "last_active_at"
        var minutes: Int
    }
    var id: String
    var object = "container"
    var created_at: Int
    var status = "running"
    var expires_after: ExpiresAfter
    var last_active_at: Int
    var memory_limit: String
    var name: String

    init(_ s: SessionRecord, memoryLimit: String) {
        id = s.id
        created_at = Int(s.createdAt.timeIntervalSince1970)
        expires_after = ExpiresAfter(minutes: max(1, (s.idleTimeoutSeconds + 59) / 60))
        last_active_at = Int(s.lastActiveAt.timeIntervalSince1970)
        memory_limit = memoryLimit
        name = s.name ?? ""
    }
}

/// OpenAI's `container.file` object.
struct ContainerFileObject: Encodable {
    var id: String
    var object = "container.file"
    var created_at: Int
    var bytes: Int64
    var container_id: String
    var path: String
    var source: String

    init(_ f: StoredFile, containerId: String) {
        id = f.id
        created_at = Int(f.createdAt.timeIntervalSince1970)
        bytes = f.sizeBytes
        container_id = containerId
        path = f.path.isEmpty ? "/mnt/data/" + f.name : f.path
        source = f.source
    }
}

/// OpenAI's list envelope.
struct ListObject<Item: Encodable>: Encodable {
    var object = "list"
    var data: [Item]
    @EncodedAsNull var first_id: String?
    @EncodedAsNull var last_id: String?
    var has_more: Bool
}

struct Page<Item> {
    var items: [Item]
    var hasMore: Bool
}

extension CodeInterpServer {
    func addSessionRoutes(to router: Router<ServerRequestContext>) {
        // Native sessions.
        router.post("/v1/sessions") { [self] request, _ in try await createSession(request) }
        router.get("/v1/sessions") { [self] _, _ in
            try jsonResponse(ListObject(data: try engine.sessions().map(SessionObject.init), first_id: nil, last_id: nil, has_more: false))
        }
        router.get("/v1/sessions/{id}") { [self] _, context in
            try jsonResponse(SessionObject(try requireSession(try context.parameters.require("id"), param: "id")))
        }
        router.delete("/v1/sessions/{id}") { [self] _, context in
            let session = try requireSession(try context.parameters.require("id"), param: "id")
            _ = try engine.deleteSession(id: session.id)
            return try jsonResponse(DeletedObject(id: session.id, object: "session.deleted"))
        }
        router.post("/v1/sessions/{id}/files") { [self] request, context in
            let session = try requireSession(try context.parameters.require("id"), param: "id")
            let file = try await addFile(request, to: session)
            return try jsonResponse(FileObject(file, url: signedURL(fileId: file.id)), status: .created)
        }
        router.get("/v1/sessions/{id}/files") { [self] _, context in
            let session = try requireSession(try context.parameters.require("id"), param: "id")
            let files = try engine.sessionFiles(sessionId: session.id).map { FileObject($0, url: signedURL(fileId: $0.id)) }
            return try jsonResponse(ListObject(data: files, first_id: files.first?.id, last_id: files.last?.id, has_more: false))
        }

        // OpenAI-compatible containers.
        router.post("/v1/containers") { [self] request, _ in try await createContainer(request) }
        router.get("/v1/containers") { [self] request, _ in try listContainers(request) }
        router.get("/v1/containers/{id}") { [self] _, context in
            try jsonResponse(containerObject(try requireContainer(context)))
        }
        router.delete("/v1/containers/{id}") { [self] _, context in
            let session = try requireContainer(context)
            _ = try engine.deleteSession(id: session.id)
            return try jsonResponse(DeletedObject(id: session.id, object: "container.deleted"))
        }
        router.post("/v1/containers/{id}/files") { [self] request, context in
            let session = try requireContainer(context)
            let file = try await addFile(request, to: session)
            return try jsonResponse(ContainerFileObject(file, containerId: session.id))
        }
        router.get("/v1/containers/{id}/files") { [self] request, context in
            let session = try requireContainer(context)
            let files = try engine.sessionFiles(sessionId: session.id)
            let page = try paginate(files, query: Self.query(request), id: \StoredFile.id)
            let data = page.items.map { ContainerFileObject($0, containerId: session.id) }
            return try jsonResponse(ListObject(data: data, first_id: data.first?.id, last_id: data.last?.id, has_more: page.hasMore))
        }
        router.get("/v1/containers/{id}/files/{file_id}") { [self] _, context in
            let (session, file) = try containerFile(context)
            return try jsonResponse(ContainerFileObject(file, containerId: session.id))
        }
        router.delete("/v1/containers/{id}/files/{file_id}") { [self] _, context in
            let (session, file) = try containerFile(context)
            _ = try engine.deleteSessionFile(sessionId: session.id, fileId: file.id)
            return try jsonResponse(DeletedObject(id: file.id, object: "container.file.deleted"))
        }
        router.get("/v1/containers/{id}/files/{file_id}/content") { [self] request, context in
            let (_, file) = try containerFile(context)
            return try contentResponse(request, file: file)
        }
    }

    // MARK: Sessions

    func createSession(_ request: Request) async throws -> Response {
        let data = try await jsonBody(request, allowEmpty: true)
        var options = SessionOptions()
        if !data.isEmpty {
            let fields = try RequestFields(body: data, allowed: ["name", "idle_timeout_s", "file_ids"])
            options.name = try fields.string("name")
            if let idle = try fields.int("idle_timeout_s") {
                guard idle > 0 else { throw APIError.invalidRequest("\"idle_timeout_s\" must be a positive number of seconds", param: "idle_timeout_s") }
                options.idleTimeoutSeconds = idle
            }
            options.fileIds = try fields.strings("file_ids") ?? []
        }
        if options.idleTimeoutSeconds == nil { options.idleTimeoutSeconds = configuration.sessionIdleTimeoutSeconds }
        try checkFiles(options.fileIds, param: "file_ids")
        let session = try engine.createSession(options)
        return try jsonResponse(SessionObject(session), status: .created)
    }

    func checkFiles(_ ids: [String], param: String) throws {
        for (i, id) in ids.enumerated() where try engine.store.file(id: id) == nil {
            throw APIError.notFound("file", id: id, param: "\(param)[\(i)]")
        }
    }

    /// Adds a file to a session: a multipart upload (field `file`) or JSON `{"file_id": ...}` copying a stored file.
    func addFile(_ request: Request, to session: SessionRecord) async throws -> StoredFile {
        let contentType = request.headers[.contentType] ?? ""
        if let boundary = SpooledUpload.boundary(contentType: contentType) {
            if let length = request.headers[.contentLength].flatMap(Int64.init), length > configuration.maxUploadBytes + 64 * 1024 {
                throw APIError.tooLarge("the upload is larger than the limit of \(configuration.maxUploadBytes) bytes", param: "file")
            }
            let upload = try await SpooledUpload.receive(request.body, boundary: boundary, maxBytes: configuration.maxUploadBytes,
                                                         spoolDirectory: engine.configuration.dataDirectory + "/work")
            let (engine, maxBytes, fd, name) = (engine, configuration.maxUploadBytes, upload.fd, upload.filename)
            defer { withExtendedLifetime(upload) {} }
            do {
                return try await blockingIO { try engine.addSessionFile(sessionId: session.id, name: name, fd: fd, maxBytes: maxBytes) }
            } catch let error as EngineError where EngineErrorKind(error) == .badRequest {
                throw APIError.invalidRequest(error.message, param: "file", code: "invalid_file_name")
            }
        }
        if contentType.lowercased().hasPrefix("multipart/") {
            throw APIError.invalidRequest("multipart body without a boundary parameter", param: "file")
        }
        let fields = try RequestFields(body: try await jsonBody(request), allowed: ["file_id"])
        let fileId = try fields.requiredString("file_id")
        guard try engine.store.file(id: fileId) != nil else { throw APIError.notFound("file", id: fileId, param: "file_id") }
        let engine = engine
        return try await blockingIO { try engine.addSessionFile(sessionId: session.id, fileId: fileId) }
    }

    // MARK: Containers

    func requireContainer(_ context: ServerRequestContext) throws -> SessionRecord {
        try requireSession(try context.parameters.require("id"), param: "container_id", what: "container")
    }

    func containerFile(_ context: ServerRequestContext) throws -> (SessionRecord, StoredFile) {
        let session = try requireContainer(context)
        let fileId = try context.parameters.require("file_id")
        guard let file = try engine.store.file(id: fileId), file.sessionId == session.id else {
            throw APIError.notFound("file in container \(session.id)", id: fileId, param: "file_id")
        }
        return (session, file)
    }

    func containerObject(_ session: SessionRecord) -> ContainerObject {
        var limit = "1g"
        if let bytes = session.memoryBytes ?? (try? engine.profile(session.profile))?.0.limits.memoryBytes {
            limit = bytes % (1 << 30) == 0 ? "\(bytes >> 30)g" : "\(bytes >> 20)m"
        }
        return ContainerObject(session, memoryLimit: limit)
    }

    func createContainer(_ request: Request) async throws -> Response {
        let fields = try RequestFields(body: try await jsonBody(request),
                                     allowed: ["name", "file_ids", "expires_after", "memory_limit", "network_policy", "skills"])
        var options = SessionOptions()
        options.name = try fields.requiredString("name")
        options.fileIds = try fields.strings("file_ids") ?? []
        options.idleTimeoutSeconds = configuration.sessionIdleTimeoutSeconds
        if let expires = try fields.object("expires_after", allowed: ["anchor", "minutes"]) {
            let anchor = try expires.requiredString("anchor")
            guard anchor == "last_active_at" else {
                throw APIError.invalidRequest("\"expires_after.anchor\" must be \"last_active_at\"", param: "expires_after.anchor")
            }
            guard let minutes = try expires.int("minutes") else {
                throw APIError.invalidRequest("missing required field \"expires_after.minutes\"", param: "expires_after.minutes")
            }
            guard (1...10_080).contains(minutes) else {
                throw APIError.invalidRequest("\"expires_after.minutes\" must be between 1 and 10080", param: "expires_after.minutes")
            }
            options.idleTimeoutSeconds = minutes * 60
        }
        if let memory = try fields.string("memory_limit") {
            guard let bytes = ContainerMemory.bytes(memory) else {
                throw APIError.invalidRequest("\"memory_limit\" must be one of 1g, 4g, 16g, 64g", param: "memory_limit")
            }
            let ceiling = try engine.profile(options.profile).0.limits.sessionMemoryCeiling
            guard bytes <= ceiling else {
                throw APIError.invalidRequest("\"memory_limit\" \(memory) is above this server's maximum for a container, "
                    + "\(Limits.describeBytes(ceiling)) (the profile's max_memory_bytes)", param: "memory_limit")
            }
            options.memoryBytes = bytes
        }
        if let policy = try fields.object("network_policy", allowed: ["type", "allowed_domains", "domain_secrets"]),
           try policy.string("type") != "disabled" {
            throw APIError.invalidRequest("this server runs code without network access; only {\"type\": \"disabled\"} is accepted",
                                          param: "network_policy")
        }
        if let skills = try? fields.strings("skills"), !skills.isEmpty {
            throw APIError.invalidRequest("skills are not supported", param: "skills")
        }
        try checkFiles(options.fileIds, param: "file_ids")
        let session = try engine.createSession(options)
        return try jsonResponse(containerObject(session))
    }

    func listContainers(_ request: Request) throws -> Response {
        let query = Self.query(request)
        var sessions = try engine.sessions()
        if let name = query["name"] { sessions = sessions.filter { $0.name == name } }
        let page = try paginate(sessions, query: query, id: \SessionRecord.id)
        let data = page.items.map(containerObject)
        return try jsonResponse(ListObject(data: data, first_id: data.first?.id, last_id: data.last?.id, has_more: page.hasMore))
    }

    static func query(_ request: Request) -> [String: String] {
        var out: [String: String] = [:]
        for (key, value) in request.uri.queryParameters where out[String(key)] == nil { out[String(key)] = String(value) }
        return out
    }

    /// OpenAI's cursor pagination over items given oldest first: `limit` (1-100, default 20), `order`
    /// (`asc`|`desc`, default `desc`), `after` (the last id of the previous page).
    func paginate<Item>(_ oldestFirst: [Item], query: [String: String], id: KeyPath<Item, String>) throws -> Page<Item> {
        var limit = 20
        if let raw = query["limit"] {
            guard let n = Int(raw), (1...100).contains(n) else {
                throw APIError.invalidRequest("\"limit\" must be an integer between 1 and 100", param: "limit")
            }
            limit = n
        }
        let order = query["order"] ?? "desc"
        guard order == "asc" || order == "desc" else {
            throw APIError.invalidRequest("\"order\" must be \"asc\" or \"desc\"", param: "order")
        }
        var items = order == "asc" ? oldestFirst : oldestFirst.reversed()
        if let after = query["after"], !after.isEmpty {
            guard let index = items.firstIndex(where: { $0[keyPath: id] == after.lowercased() }) else {
                throw APIError.invalidRequest("\"after\" is not the id of an item of this list (it may have been deleted)", param: "after")
            }
            items = Array(items[items.index(after: index)...])
        }
        return Page(items: Array(items.prefix(limit)), hasMore: items.count > limit)
    }
}

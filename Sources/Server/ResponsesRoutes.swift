import Foundation
import HTTPTypes
import Hummingbird
import InterpreterCore
import Logging
import NIOCore
import Responses
import Sandbox
import Synchronization
import Tools

/// The Responses service of the server, created on first use (it opens its tables in the engine's database).
final class ResponsesState: Sendable {
    private let service = Mutex<ResponsesService?>(nil)

    func service(server: CodeInterpServer) throws -> ResponsesService {
        let tool = try server.pythonTool()
        return try service.withLock { existing in
            if let existing { return existing }
            // The tool's executor is the server's: the loop's executions are admitted, counted and logged.
            let made = try ResponsesService(tool: tool, upstream: server.upstream)
            existing = made
            return made
        }
    }
}

extension ServerConfiguration {
    /// The model behind `/v1/responses`: the script, the model server, or (neither configured) the bundled demo.
    public func makeUpstream(environment: [String: String]) throws -> any ModelUpstream {
        if let upstreamScript {
            do { return try ScriptedUpstream(contentsOf: upstreamScript) } catch {
                throw ConfigurationError("upstream_script: \(error)")
            }
        }
        guard let upstreamBaseURL else { return try ScriptedUpstream.demo() }
        var key: String? = nil
        if let name = upstreamAPIKeyEnv {
            guard let value = environment[name], !value.isEmpty else {
                throw ConfigurationError("upstream_api_key_env names $\(name), which is not set")
            }
            key = value
        }
        let endpoint = UpstreamEndpoint(baseURL: upstreamBaseURL, apiKey: key, model: upstreamModel)
        return upstreamAPI == "responses" ? ResponsesAPIUpstream(endpoint: endpoint) : ChatCompletionsUpstream(endpoint: endpoint)
    }
}

/// A one-shot signal: the stream started (nil) or failed before it did (the error to answer with).
final class StartSignal: Sendable {
    private enum State {
        case waiting([CheckedContinuation<APIError?, Never>])
        case done(APIError?)
    }
    private let state = Mutex(State.waiting([]))

    /// True when this call decided the outcome.
    @discardableResult
    func resolve(_ error: APIError?) -> Bool {
        let waiters: [CheckedContinuation<APIError?, Never>]? = state.withLock { state in
            guard case .waiting(let w) = state else { return nil }
            state = .done(error)
            return w
        }
        guard let waiters else { return false }
        for w in waiters { w.resume(returning: error) }
        return true
    }

    var isResolved: Bool {
        state.withLock { if case .done = $0 { return true } else { return false } }
    }

    func wait() async -> APIError? {
        await withCheckedContinuation { c in
            let ready: APIError?? = state.withLock { state in
                switch state {
                case .waiting(let w):
                    state = .waiting(w + [c])
                    return nil
                case .done(let e):
                    return .some(e)
                }
            }
            if let ready { c.resume(returning: ready) }
        }
    }
}

extension APIError {
    init(_ e: ResponsesError) {
        self.init(status: HTTPResponse.Status(code: e.status), message: e.message, type: e.type, param: e.param, code: e.code)
        if let seconds = e.retryAfter { headers = [(.retryAfter, String(seconds))] }
    }
}

extension JSONValue {
    /// The `id` of an item, for pagination.
    var itemId: String { self["id"]?.stringValue ?? "" }
}

extension CodeInterpServer {
    func addResponsesRoutes(to router: Router<ServerRequestContext>) {
        router.post("/v1/responses") { [self] request, context in try await createResponse(request, context) }
        router.get("/v1/responses/{id}") { [self] request, context in
            let id = try context.parameters.require("id")
            return toolJSON(try responses { try $0.retrieve(id: id, include: Self.include(request)) })
        }
        router.delete("/v1/responses/{id}") { [self] _, context in
            let id = try context.parameters.require("id")
            return toolJSON(try responses { try $0.delete(id: id) })
        }
        router.get("/v1/responses/{id}/input_items") { [self] request, context in
            let id = try context.parameters.require("id")
            let items = try responses { try $0.inputItems(id: id, include: Self.include(request)) }
            return try listJSON(items, request)
        }

        router.post("/v1/conversations") { [self] request, _ in try await createConversation(request) }
        router.get("/v1/conversations") { [self] request, _ in
            try listJSON(try responses { try $0.conversations() }.map(\.json), request)
        }
        router.get("/v1/conversations/{id}") { [self] _, context in
            let id = try context.parameters.require("id")
            return toolJSON(try responses { try $0.conversation(id: id) }.json)
        }
        router.post("/v1/conversations/{id}") { [self] request, context in
            let id = try context.parameters.require("id")
            let body = try await toolRequestBody(request, allowed: ["metadata"])
            let metadata = try Self.metadata(body["metadata"])
            return toolJSON(try responses { try $0.updateConversation(id: id, metadata: metadata) }.json)
        }
        router.delete("/v1/conversations/{id}") { [self] _, context in
            let id = try context.parameters.require("id")
            let service = try responsesService()
            do { return toolJSON(try await service.deleteConversation(id: id)) } catch let error as ResponsesError { throw APIError(error) }
        }
        router.get("/v1/conversations/{id}/items") { [self] request, context in
            let id = try context.parameters.require("id")
            return try listJSON(try responses { try $0.conversationItems(id: id, include: Self.include(request)) }, request)
        }
        router.post("/v1/conversations/{id}/items") { [self] request, context in
            let id = try context.parameters.require("id")
            let body = try await toolRequestBody(request, allowed: ["items"])
            let items = try Self.items(body["items"], param: "items")
            let added = try responses { try $0.addConversationItems(id: id, items: items) }
            return toolJSON(["object": "list", "data": .array(added), "first_id": added.first.map { .string($0.itemId) } ?? .null,
                             "last_id": added.last.map { .string($0.itemId) } ?? .null, "has_more": false])
        }
        router.get("/v1/conversations/{id}/items/{item_id}") { [self] request, context in
            let id = try context.parameters.require("id")
            let itemId = try context.parameters.require("item_id")
            return toolJSON(try responses { try $0.conversationItem(id: id, itemId: itemId, include: Self.include(request)) })
        }
        router.delete("/v1/conversations/{id}/items/{item_id}") { [self] _, context in
            let id = try context.parameters.require("id")
            let itemId = try context.parameters.require("item_id")
            return toolJSON(try responses { try $0.deleteConversationItem(id: id, itemId: itemId) }.json)
        }

        router.get("/v1/models") { [self] _, _ in
            let models = await modelObjects()
            return toolJSON(["object": "list", "data": .array(models)])
        }
        router.get("/v1/models/{id}") { [self] _, context in
            let id = try context.parameters.require("id")
            guard let model = await modelObjects().first(where: { $0["id"]?.stringValue == id }) else {
                throw APIError(status: .notFound, message: "The model '\(id)' does not exist", type: "invalid_request_error",
                               param: "model", code: "model_not_found")
            }
            return toolJSON(model)
        }
    }

    func responsesService() throws -> ResponsesService {
        do {
            return try responsesState.service(server: self)
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError.internalError("the Responses API could not be set up: \(error)")
        }
    }

    /// Runs `body` with the service, mapping its errors to the envelope.
    func responses<T>(_ body: (ResponsesService) throws -> T) throws -> T {
        let service = try responsesService()
        do { return try body(service) } catch let error as ResponsesError { throw APIError(error) }
    }

    func modelObjects() async -> [JSONValue] {
        let names = (try? await responsesService().models()) ?? []
        let created = Int(startedAt.timeIntervalSince1970)
        return names.map { ["id": .string($0), "object": "model", "created": .int(created), "owned_by": "codeinterp"] }
    }

    static func include(_ request: Request) -> Set<String> {
        var out = Set<String>()
        for (key, value) in request.uri.queryParameters where key == "include" || key == "include[]" { out.insert(String(value)) }
        return out
    }

    func listJSON(_ oldestFirst: [JSONValue], _ request: Request) throws -> Response {
        let page = try paginate(oldestFirst, query: Self.query(request), id: \JSONValue.itemId)
        return toolJSON(["object": "list", "data": .array(page.items),
                         "first_id": page.items.first.map { .string($0.itemId) } ?? .null,
                         "last_id": page.items.last.map { .string($0.itemId) } ?? .null, "has_more": .bool(page.hasMore)])
    }

    static func metadata(_ value: JSONValue?) throws -> JSONValue {
        switch value {
        case nil, .null?: return [:]
        case .object(let o)?:
            guard o.count <= 16, o.values.allSatisfy({ $0.stringValue != nil }) else {
                throw APIError.invalidRequest("\"metadata\" must be an object of at most 16 string values", param: "metadata")
            }
            return .object(o)
        case let v?:
            throw APIError.invalidRequest("\"metadata\" must be an object, not \(v.typeName)", param: "metadata")
        }
    }

    static func items(_ value: JSONValue?, param: String) throws -> [JSONValue] {
        switch value {
        case nil, .null?: return []
        case .array(let items)?:
            guard items.count <= 20 else { throw APIError.invalidRequest("at most 20 items may be added at once", param: param) }
            var out: [JSONValue] = []
            for (i, item) in items.enumerated() {
                do { out.append(try Items.normalizeItem(item, param: "\(param)[\(i)]")) } catch { throw APIError(error) }
            }
            return out
        case let v?:
            throw APIError.invalidRequest("\"\(param)\" must be an array of items, not \(v.typeName)", param: param)
        }
    }

    func createConversation(_ request: Request) async throws -> Response {
        let data = try await jsonBody(request, allowEmpty: true)
        let body = data.isEmpty ? [:] : try objectBody(data, allowed: ["items", "metadata"]).object
        let items = try Self.items(body["items"], param: "items")
        let metadata = try Self.metadata(body["metadata"])
        return toolJSON(try responses { try $0.createConversation(items: items, metadata: metadata) }.json)
    }

    // MARK: POST /v1/responses

    func createResponse(_ request: Request, _ context: ServerRequestContext) async throws -> Response {
        let data = try await jsonBody(request)
        let body: JSONValue
        do {
            body = try JSONValue.parseDocument(data)
        } catch {
            throw APIError.invalidRequest("the request body is not valid JSON: \(error.message)", code: "invalid_json")
        }
        let service = try responsesService()
        let prepared: PreparedResponse
        do {
            prepared = try service.prepare(try ResponseRequest.parse(body))
        } catch {
            throw APIError(error)
        }
        var logger = context.logger
        logger[metadataKey: "response_id"] = .string(prepared.id)
        logger.info("response accepted", metadata: ["model": "\(prepared.request.model)", "stream": "\(prepared.request.stream)",
                                                    "upstream": "\(upstream.label)"])
        guard prepared.request.stream else {
            do {
                return toolJSON(try await service.run(prepared, sink: nil, logger: logger))
            } catch let error as ResponsesError {
                throw APIError(error)
            }
        }

        let (frames, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let start = StartSignal()
        let sink = EventSink(send: { type, event in continuation.yield(Self.sse(type, event)) },
                             started: { start.resolve(nil) })
        // While the code runs nothing else is written: a comment every second finds a client that went away
        // (the write fails), and keeps proxies from closing an idle stream. SSE clients skip comments.
        let heartbeat = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                if Task.isCancelled || !start.isResolved { continue }
                continuation.yield(ByteBuffer(string: ": keep-alive\n\n"))
            }
        }
        let task = Task {
            do {
                _ = try await service.run(prepared, sink: sink, logger: logger)
            } catch {
                let apiError = (error as? ResponsesError).map(APIError.init) ?? APIError.from(error)
                start.resolve(apiError)
            }
            heartbeat.cancel()
            start.resolve(nil)
            continuation.finish()
        }
        if let error = await start.wait() { throw error }
        let responseBody = ResponseBody { writer in
            // A client that goes away cancels the loop (and the code it runs).
            try await Self.writeEvents(cancelling: task) {
                for await frame in frames { try await writer.write(frame) }
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: Self.eventStreamHeaders, body: responseBody)
    }
}

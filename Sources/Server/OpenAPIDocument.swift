import Foundation
import InterpreterCore

/// The OpenAPI 3.1 description of the API, written by hand (not derived from the router) so that a test can
/// compare the two and catch a route that is served but undocumented, or documented but not served.
enum OpenAPIDocument {
    struct Operation {
        var method: String
        var path: String
        var summary: String
        var tag: String
        var query: [(name: String, schema: JSONValue, description: String)] = []
        var requestBody: JSONValue? = nil
        var response: (status: String, contentType: String, schema: JSONValue)
        /// More types the success response comes in (same schema).
        var otherContentTypes: [String] = []
        var errors: [String] = ["400", "401", "404", "429"]
        var isPublic = false
        /// More media types of the success response (a streamed variant).
        var alternatives: [(contentType: String, schema: JSONValue)] = []
        /// More non-error responses (202 for an MCP notification, 503 of /healthz).
        var otherResponses: [(status: String, contentType: String, schema: JSONValue)] = []
        /// Errors answered in another shape than the envelope (the MCP SDK's JSON-RPC errors).
        var errorSchemas: [String: JSONValue] = [:]
    }

    static func ref(_ name: String) -> JSONValue { .object(["$ref": .string("#/components/schemas/\(name)")]) }
    static func type(_ t: String, _ description: String? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": .string(t)]
        if let description { o["description"] = .string(description) }
        return .object(o)
    }
    static func object(_ properties: [String: JSONValue], required: [String] = []) -> JSONValue {
        .object(["type": "object", "properties": .object(properties), "required": .array(required.map { .string($0) })])
    }
    static func array(_ items: JSONValue) -> JSONValue { .object(["type": "array", "items": items]) }
    static func nullable(_ t: String) -> JSONValue { .object(["type": .array([.string(t), "null"])]) }
    static let json = "application/json"
    static let listQuery: [(name: String, schema: JSONValue, description: String)] = [
        ("limit", .object(["type": "integer", "minimum": 1, "maximum": 100, "default": 20]), "Items per page."),
        ("order", .object(["type": "string", "enum": ["asc", "desc"], "default": "desc"]), "Order by created_at."),
        ("after", type("string"), "The last id of the previous page."),
    ]
    static let uploadBody: JSONValue = .object([
        "required": true,
        "content": .object([
            "multipart/form-data": .object(["schema": object(["file": .object(["type": "string", "format": "binary"])], required: ["file"])]),
            "application/json": .object(["schema": object(["file_id": type("string")], required: ["file_id"])]),
        ]),
    ])

    static var operations: [Operation] {
        var ops: [Operation] = [
            Operation(method: "get", path: "/healthz",
                      summary: "Health (no API key): 200 while executions can run, 503 with the reason while they cannot (no sandbox worker, sandbox set-up failing); a check while unhealthy starts a probe execution.",
                      tag: "operations", response: ("200", json, ref("Health")), errors: [], isPublic: true,
                      otherResponses: [("503", json, ref("Health"))]),
            Operation(method: "get", path: "/openapi.json", summary: "This document (no API key).", tag: "operations",
                      response: ("200", json, type("object")), errors: [], isPublic: true),
            Operation(method: "get", path: "/metrics", summary: "Prometheus metrics.", tag: "operations",
                      response: ("200", "text/plain", type("string")), errors: ["401"]),
            Operation(method: "post", path: "/v1/execute",
                      summary: "Run Python code. With `Accept: text/event-stream` or `?stream=true`, Server-Sent Events: stdout, stderr, display, file, then result.",
                      tag: "execute",
                      query: [("stream", type("boolean"), "Stream the execution as Server-Sent Events.")],
                      requestBody: .object(["required": true, "content": .object([json: .object(["schema": ref("ExecuteRequest")])])]),
                      response: ("200", json, ref("ExecutionResult")), errors: ["400", "401", "404", "413", "415", "429", "503"],
                      alternatives: [("text/event-stream", .object(["description": "Server-Sent Events: stdout and stderr ({text}), display, file, then result (the ExecutionResult), or error (the envelope)."]))]),
            Operation(method: "get", path: "/", summary: "The page: a chat with the configured model and a notebook (HTML; no API key: it signs in with one, from `?token=KEY` or a form).",
                      tag: "page", query: [("token", type("string"), "An API key the page keeps (in local storage) and drops from the address bar.")],
                      response: ("200", "text/html", type("string")), errors: [], isPublic: true),
            Operation(method: "get", path: "/web/{file}", summary: "A file of the page (JavaScript module, stylesheet, icon; no API key).",
                      tag: "page", response: ("200", "text/javascript", type("string")),
                      otherContentTypes: ["text/css", "text/html", "image/svg+xml"], errors: ["404"], isPublic: true),
            Operation(method: "post", path: "/v1/files",
                      summary: "OpenAI-compatible: upload a file (multipart `file`; `purpose` is accepted and not used), to attach to a message (`input_file`) or copy into a session by id.",
                      tag: "files",
                      requestBody: .object(["required": true, "content": .object(["multipart/form-data": .object(["schema": object([
                          "file": .object(["type": "string", "format": "binary"]), "purpose": type("string"),
                      ], required: ["file"])])])]),
                      response: ("200", json, ref("File")), errors: ["400", "401", "413", "415", "429"]),
            Operation(method: "get", path: "/v1/files/{id}", summary: "A stored file's metadata (codeinterp and OpenAI `file` keys).",
                      tag: "files", response: ("200", json, ref("File"))),
            Operation(method: "get", path: "/v1/files/{id}/content",
                      summary: "A stored file's bytes. Works without a key through the signed `url` of a file object. Supports ETag/If-None-Match and Range.",
                      tag: "files",
                      query: [("expires", type("integer"), "Signed URL expiry (unix seconds)."),
                              ("sig", type("string"), "Signed URL signature (HMAC-SHA256, hex).")],
                      response: ("200", "*/*", .object(["type": "string", "format": "binary", "description": "The file's own media type."])),
                      errors: ["400", "401", "403", "404", "416"], otherResponses: [("206", "*/*", .object(["type": "string", "format": "binary"]))]),
            Operation(method: "delete", path: "/v1/files/{id}", summary: "Delete a stored file.", tag: "files",
                      response: ("200", json, ref("Deleted"))),
        ]
        ops += toolOperations
        ops += responsesOperations
        guard includeSessions else { return ops }
        ops += [
            Operation(method: "post", path: "/v1/sessions", summary: "Create a session: a stateful interpreter with its own /mnt/data.",
                      tag: "sessions",
                      requestBody: .object(["content": .object([json: .object(["schema": object([
                          "name": type("string"), "idle_timeout_s": type("integer"), "file_ids": array(type("string")),
                      ])])])]),
                      response: ("201", json, ref("Session"))),
            Operation(method: "get", path: "/v1/sessions", summary: "Live sessions, oldest first.", tag: "sessions",
                      response: ("200", json, object(["object": type("string"), "data": array(ref("Session"))]))),
            Operation(method: "get", path: "/v1/sessions/{id}", summary: "One session.", tag: "sessions",
                      response: ("200", json, ref("Session"))),
            Operation(method: "delete", path: "/v1/sessions/{id}", summary: "End a session: kills its interpreter, removes its files.",
                      tag: "sessions", response: ("200", json, ref("Deleted"))),
            Operation(method: "post", path: "/v1/sessions/{id}/files", summary: "Upload a file into the session's /mnt/data (multipart field `file`, or JSON `file_id`).",
                      tag: "sessions", requestBody: uploadBody, response: ("201", json, ref("File")),
                      errors: ["400", "401", "404", "413", "415", "429", "507"]),
            Operation(method: "get", path: "/v1/sessions/{id}/files", summary: "The files in the session's /mnt/data.", tag: "sessions",
                      response: ("200", json, object(["object": type("string"), "data": array(ref("File"))]))),
            Operation(method: "post", path: "/v1/containers", summary: "OpenAI-compatible: create a container (a session).", tag: "containers",
                      requestBody: .object(["required": true, "content": .object([json: .object(["schema": ref("ContainerCreate")])])]),
                      response: ("200", json, ref("Container"))),
            Operation(method: "get", path: "/v1/containers", summary: "OpenAI-compatible: list containers.", tag: "containers",
                      query: listQuery + [("name", type("string"), "Only containers with this name.")],
                      response: ("200", json, ref("ContainerList"))),
            Operation(method: "get", path: "/v1/containers/{id}", summary: "OpenAI-compatible: retrieve a container.", tag: "containers",
                      response: ("200", json, ref("Container"))),
            Operation(method: "delete", path: "/v1/containers/{id}", summary: "OpenAI-compatible: delete a container.", tag: "containers",
                      response: ("200", json, ref("Deleted"))),
            Operation(method: "post", path: "/v1/containers/{id}/files", summary: "OpenAI-compatible: add a file (multipart `file` or JSON `file_id`).",
                      tag: "containers", requestBody: uploadBody, response: ("200", json, ref("ContainerFile")),
                      errors: ["400", "401", "404", "413", "415", "429", "507"]),
            Operation(method: "get", path: "/v1/containers/{id}/files", summary: "OpenAI-compatible: list a container's files.", tag: "containers",
                      query: listQuery, response: ("200", json, ref("ContainerFileList"))),
            Operation(method: "get", path: "/v1/containers/{id}/files/{file_id}", summary: "OpenAI-compatible: retrieve a container file.",
                      tag: "containers", response: ("200", json, ref("ContainerFile"))),
            Operation(method: "delete", path: "/v1/containers/{id}/files/{file_id}", summary: "OpenAI-compatible: delete a container file.",
                      tag: "containers", response: ("200", json, ref("Deleted"))),
            Operation(method: "get", path: "/v1/containers/{id}/files/{file_id}/content", summary: "OpenAI-compatible: a container file's bytes.",
                      tag: "containers", response: ("200", "*/*", .object(["type": "string", "format": "binary", "description": "The file's own media type."])),
                      errors: ["401", "404", "416"], otherResponses: [("206", "*/*", .object(["type": "string", "format": "binary"]))]),
        ]
        return ops
    }

    /// The Responses and Conversations APIs and the model list (ResponsesRoutes.swift).
    static var responsesOperations: [Operation] {
        let includeQuery: [(name: String, schema: JSONValue, description: String)] = [
            ("include", type("string"), "`code_interpreter_call.outputs` shows the logs and images of code runs; `x_codeinterp.execution` (codeinterp's own) each run's native result object under `x_codeinterp.execution`."),
        ]
        func body(_ schema: String) -> JSONValue {
            .object(["required": true, "content": .object([json: .object(["schema": ref(schema)])])])
        }
        return [
            Operation(method: "post", path: "/v1/responses",
                      summary: "OpenAI Responses API in front of the configured model. A `code_interpreter` tool runs here, in the request's container (an id, or `{\"type\":\"auto\"}`: one per conversation or response chain); `function` tools pass through. `stream: true` answers with Server-Sent Events.",
                      tag: "responses", requestBody: body("ResponseCreate"), response: ("200", json, ref("Response")),
                      errors: ["400", "401", "404", "413", "415", "429", "502"],
                      alternatives: [("text/event-stream", .object(["description": "With `stream: true`: OpenAI's response events as Server-Sent Events."]))]),
            Operation(method: "get", path: "/v1/responses/{id}", summary: "A stored response.", tag: "responses",
                      query: includeQuery, response: ("200", json, ref("Response"))),
            Operation(method: "delete", path: "/v1/responses/{id}", summary: "Delete a stored response.", tag: "responses",
                      response: ("200", json, ref("Deleted"))),
            Operation(method: "get", path: "/v1/responses/{id}/input_items", summary: "The input items of a response.",
                      tag: "responses", query: listQuery + includeQuery, response: ("200", json, ref("ItemList"))),
            Operation(method: "post", path: "/v1/conversations", summary: "Create a conversation (optional `items`, `metadata`).",
                      tag: "conversations",
                      requestBody: .object(["content": .object([json: .object(["schema": ref("ConversationCreate")])])]),
                      response: ("200", json, ref("Conversation")), errors: ["400", "401", "415", "429"]),
            Operation(method: "get", path: "/v1/conversations",
                      summary: "The stored conversations (codeinterp's own: OpenAI's API has no such list).", tag: "conversations",
                      query: listQuery, response: ("200", json, list("Conversation")), errors: ["400", "401", "429"]),
            Operation(method: "get", path: "/v1/conversations/{id}", summary: "A conversation.", tag: "conversations",
                      response: ("200", json, ref("Conversation"))),
            Operation(method: "post", path: "/v1/conversations/{id}", summary: "Replace a conversation's metadata.",
                      tag: "conversations",
                      requestBody: body("ConversationUpdate"), response: ("200", json, ref("Conversation"))),
            Operation(method: "delete", path: "/v1/conversations/{id}", summary: "Delete a conversation, its items and its automatic container.",
                      tag: "conversations", response: ("200", json, ref("Deleted"))),
            Operation(method: "get", path: "/v1/conversations/{id}/items", summary: "A conversation's items.", tag: "conversations",
                      query: listQuery + includeQuery, response: ("200", json, ref("ItemList"))),
            Operation(method: "post", path: "/v1/conversations/{id}/items", summary: "Add items (at most 20) to a conversation.",
                      tag: "conversations", requestBody: body("ConversationItemsCreate"), response: ("200", json, ref("ItemList"))),
            Operation(method: "get", path: "/v1/conversations/{id}/items/{item_id}", summary: "One item of a conversation.",
                      tag: "conversations", query: includeQuery, response: ("200", json, type("object"))),
            Operation(method: "delete", path: "/v1/conversations/{id}/items/{item_id}", summary: "Delete an item; answers with the conversation.",
                      tag: "conversations", response: ("200", json, ref("Conversation"))),
            Operation(method: "get", path: "/v1/models", summary: "The configured model(s).", tag: "models",
                      response: ("200", json, object(["object": type("string"), "data": array(ref("Model"))])), errors: ["401", "429"]),
            Operation(method: "get", path: "/v1/models/{id}", summary: "One configured model.", tag: "models",
                      response: ("200", json, ref("Model"))),
        ]
    }

    static let sseOrJSON: JSONValue = .object(["description": "A JSON-RPC message (as JSON-RPC over SSE for POSTed requests)."])
    /// The MCP transport answers its own protocol errors (no session, unknown session, Accept, content type) as
    /// JSON-RPC errors; the API key, Origin and rate limit checks before it use the envelope.
    static let mcpErrors: [String: JSONValue] = {
        let jsonRPC: JSONValue = .object(["anyOf": .array([ref("JSONRPCError"), ref("Error")])])
        return ["400": jsonRPC, "404": jsonRPC, "406": jsonRPC, "415": jsonRPC]
    }()

    /// `execute_python` for chat backends and MCP hosts (ToolRoutes.swift).
    static var toolOperations: [Operation] {
        let mcpBody: JSONValue = .object(["required": true, "content": .object([json: .object(["schema": .object([
            "type": "object", "description": "A JSON-RPC 2.0 request or notification (MCP 2025-11-25).",
        ])])])])
        return [
            Operation(method: "get", path: "/v1/tools", summary: "The execute_python tool definition, shaped for the API named by `format`.",
                      tag: "tools",
                      query: [("format", .object(["type": "string", "enum": ["openai-chat", "openai-responses", "anthropic", "mcp"],
                                                  "default": "openai-chat"]), "The API the definition is for.")],
                      response: ("200", json, .object(["type": "object", "description": "The definition, as that API's `tools[]` entry."])),
                      errors: ["400", "401", "429"]),
            Operation(method: "post", path: "/v1/tools/call",
                      summary: "Run a model's execute_python call (Chat Completions tool_calls[] entry, Responses function_call item or Anthropic tool_use block); answers with the tool-result message of the same API. Bad arguments are a 200 result that tells the model what to fix.",
                      tag: "tools",
                      requestBody: .object(["required": true, "content": .object([json: .object(["schema": ref("ToolCallRequest")])])]),
                      response: ("200", json, .object(["type": "object", "description": "A Chat `tool` message, a Responses `function_call_output` item or an Anthropic `tool_result` block."])),
                      errors: ["400", "401", "413", "415", "429"]),
            Operation(method: "post", path: "/v1/links/resolve",
                      summary: "Rewrite `sandbox:/mnt/data/NAME` links in a model's answer into signed URLs of the conversation's files, with container_file_citation annotations.",
                      tag: "tools",
                      requestBody: .object(["required": true, "content": .object([json: .object(["schema": ref("LinksResolveRequest")])])]),
                      response: ("200", json, ref("ResolvedLinks")), errors: ["400", "401", "415", "429"]),
            Operation(method: "post", path: "/mcp",
                      summary: "MCP Streamable HTTP: JSON-RPC requests (answered as SSE) and notifications (202). `initialize` opens a session (`Mcp-Session-Id`). A browser Origin must be one of cors_origins.",
                      tag: "mcp", requestBody: mcpBody, response: ("200", "text/event-stream", sseOrJSON),
                      errors: ["400", "401", "403", "404", "406", "415", "429"],
                      alternatives: [(json, sseOrJSON)], otherResponses: [("202", json, sseOrJSON)], errorSchemas: mcpErrors),
            Operation(method: "get", path: "/mcp", summary: "MCP Streamable HTTP: the session's stream of server-initiated messages (SSE).",
                      tag: "mcp", response: ("200", "text/event-stream", sseOrJSON), errors: ["400", "401", "403", "404", "406", "429"],
                      errorSchemas: mcpErrors),
            Operation(method: "delete", path: "/mcp", summary: "MCP Streamable HTTP: end the session named by `Mcp-Session-Id`.",
                      tag: "mcp", response: ("200", json, .object(["type": "object"])), errors: ["400", "401", "403", "404", "429"],
                      errorSchemas: mcpErrors),
        ]
    }

    static var schemas: [String: JSONValue] {
        let fileRef = object([
            "id": type("string"), "name": type("string"), "path": type("string"), "mime_type": type("string"),
            "size_bytes": type("integer"), "sha256": type("string"), "url": type("string", "Absolute signed download URL."),
            "source": .object(["type": "string", "enum": ["user", "assistant"]]),
        ], required: ["id", "name", "path", "mime_type", "size_bytes", "sha256", "source"])
        return [
            "Error": object(["error": object([
                "message": type("string"), "type": type("string"), "param": nullable("string"), "code": nullable("string"),
            ], required: ["message", "type", "param", "code"])], required: ["error"]),
            "ExecuteRequest": object([
                "code": type("string", "Python source."), "session_id": type("string", "Run in this session (state persists)."),
                "timeout_s": type("number", "Wall-clock limit; can only tighten the profile's."),
                "files": .object(["type": "array", "items": type("string"), "description": .string("Stored file ids copied into /mnt/data first.")]),
            ], required: ["code"]),
            "ExecutionResult": object([
                "id": type("string"), "session_id": nullable("string"),
                "status": .object(["type": "string", "enum": .array(["ok", "error", "timeout", "memory_limit", "output_limit", "killed", "blocked_syscall"])]),
                "stdout": type("string"), "stderr": type("string"),
                "truncated": object(["stdout": type("boolean"), "stderr": type("boolean")]),
                "result": .object(["type": .array(["object", "null"]), "additionalProperties": type("string")]),
                "displays": array(object(["type": type("string"), "mime_type": type("string"), "file_id": type("string"), "url": type("string")])),
                "error": .object(["type": .array(["object", "null"]), "properties": .object([
                    "name": type("string"), "value": type("string"), "traceback": array(type("string")),
                ])]),
                "files": array(fileRef),
                "usage": object(["wall_ms": type("integer"), "cpu_ms": type("integer"), "max_rss_kb": type("integer")]),
                "blocked_syscall": type("string"),
            ], required: ["id", "session_id", "status", "stdout", "stderr", "truncated", "result", "displays", "error", "files", "usage"]),
            "File": object([
                "id": type("string"), "object": type("string"), "bytes": type("integer"), "created_at": type("integer"),
                "expires_at": nullable("integer"), "filename": type("string"), "purpose": type("string"), "status": type("string"),
                "name": type("string"), "path": type("string"), "mime_type": type("string"), "size_bytes": type("integer"),
                "sha256": type("string"), "session_id": nullable("string"), "source": type("string"), "kind": type("string"),
                "url": type("string"),
            ], required: ["id", "object", "bytes", "created_at", "filename", "purpose", "url"]),
            "Health": object([
                "status": .object(["type": "string", "enum": ["ok", "unavailable"]]),
                "reason": type("string", "Why executions cannot run now (only when unavailable)."),
                "version": type("string"), "uptime_s": type("integer"), "slots": type("integer"), "executions_in_flight": type("integer"),
            ], required: ["status", "version", "uptime_s", "slots", "executions_in_flight"]),
            "JSONRPCError": object(["jsonrpc": type("string"), "id": .object(["type": .array(["string", "integer", "null"])]),
                                    "error": object(["code": type("integer"), "message": type("string")], required: ["code", "message"])],
                                   required: ["error"]),
            "Deleted": object(["id": type("string"), "object": type("string"), "deleted": type("boolean")], required: ["id", "object", "deleted"]),
            "Session": object([
                "id": type("string"), "object": type("string"), "name": nullable("string"), "profile": type("string"),
                "created_at": type("integer"), "last_active_at": type("integer"), "expires_at": type("integer"),
                "idle_timeout_s": type("integer"), "execution_count": type("integer"),
            ], required: ["id", "object", "created_at", "last_active_at", "expires_at", "idle_timeout_s"]),
            "ContainerCreate": object([
                "name": type("string"), "file_ids": array(type("string")),
                "expires_after": object(["anchor": .object(["type": "string", "enum": ["last_active_at"]]), "minutes": type("integer")]),
                "memory_limit": type("string"), "network_policy": type("object"),
            ], required: ["name"]),
            "Container": object([
                "id": type("string"), "object": type("string"), "created_at": type("integer"), "status": type("string"),
                "expires_after": object(["anchor": type("string"), "minutes": type("integer")]), "last_active_at": type("integer"),
                "memory_limit": type("string"), "name": type("string"),
            ], required: ["id", "object", "created_at", "status", "name"]),
            "ContainerFile": object([
                "id": type("string"), "object": type("string"), "created_at": type("integer"), "bytes": nullable("integer"),
                "container_id": type("string"), "path": type("string"), "source": type("string"),
            ], required: ["id", "object", "created_at", "bytes", "container_id", "path", "source"]),
            "ToolCallRequest": object([
                "call": .object(["type": "object", "description": "The model's tool call exactly as the API returned it."]),
                "conversation_id": type("string", "Your conversation's id: its calls share one session (variables, files)."),
            ], required: ["call"]),
            "LinksResolveRequest": object([
                "text": type("string", "The model's answer."),
                "conversation_id": type("string", "The conversation whose files the links name (or session_id)."),
                "session_id": type("string"),
            ], required: ["text"]),
            "ResolvedLinks": object([
                "text": type("string"),
                "annotations": array(object([
                    "type": type("string"), "container_id": type("string"), "file_id": type("string"), "filename": type("string"),
                    "start_index": type("integer"), "end_index": type("integer"), "url": type("string"),
                ])),
                "unresolved": array(type("string")),
            ], required: ["text", "annotations", "unresolved"]),
            "ResponseCreate": object([
                "model": type("string"), "input": .object(["description": "A string, or an array of items (messages, function_call_output, earlier outputs)."]),
                "instructions": type("string"), "tools": array(type("object", "`{type: code_interpreter, container}` or `{type: function, name, parameters}`.")),
                "tool_choice": .object(["description": "auto, none, required, or a tool."]), "include": array(type("string")),
                "previous_response_id": type("string"), "conversation": .object(["description": "A conversation id or {id}."]),
                "store": type("boolean"), "stream": type("boolean"), "max_output_tokens": type("integer"),
                "temperature": type("number"), "top_p": type("number"), "metadata": type("object"),
                "parallel_tool_calls": type("boolean"),
            ], required: ["model"]),
            "Response": object([
                "id": type("string"), "object": type("string"), "created_at": type("integer"),
                "status": .object(["type": "string", "enum": ["completed", "failed", "in_progress", "incomplete"]]),
                "model": type("string"), "output": array(type("object", "message, code_interpreter_call or function_call items.")),
                "previous_response_id": nullable("string"), "conversation": .object(["type": .array(["object", "null"])]),
                "instructions": nullable("string"), "tools": array(type("object")), "usage": .object(["type": .array(["object", "null"])]),
                "error": .object(["type": .array(["object", "null"])]), "store": type("boolean"), "metadata": type("object"),
            ], required: ["id", "object", "created_at", "status", "model", "output"]),
            "ItemList": object(["object": type("string"), "data": array(type("object")), "first_id": nullable("string"),
                                "last_id": nullable("string"), "has_more": type("boolean")],
                               required: ["object", "data", "first_id", "last_id", "has_more"]),
            "ConversationCreate": object(["items": array(type("object")), "metadata": type("object")]),
            "ConversationUpdate": object(["metadata": type("object")]),
            "ConversationItemsCreate": object(["items": array(type("object"))]),
            "Conversation": object(["id": type("string"), "object": type("string"), "created_at": type("integer"),
                                    "metadata": type("object")], required: ["id", "object", "created_at", "metadata"]),
            "Model": object(["id": type("string"), "object": type("string"), "created": type("integer"), "owned_by": type("string")],
                            required: ["id", "object", "created", "owned_by"]),
            "ContainerList": list("Container"),
            "ContainerFileList": list("ContainerFile"),
        ]
    }

    static func list(_ item: String) -> JSONValue {
        object(["object": type("string"), "data": array(ref(item)), "first_id": nullable("string"), "last_id": nullable("string"),
                "has_more": type("boolean")], required: ["object", "data", "first_id", "last_id", "has_more"])
    }

    static func document(serverURL: String) -> JSONValue {
        var paths: [String: [String: JSONValue]] = [:]
        for op in operations {
            var parameters: [JSONValue] = []
            for segment in op.path.split(separator: "/") where segment.hasPrefix("{") {
                let name = String(segment.dropFirst().dropLast())
                parameters.append(.object(["name": .string(name), "in": "path", "required": true, "schema": type("string")]))
            }
            for q in op.query {
                parameters.append(.object(["name": .string(q.name), "in": "query", "required": false, "schema": q.schema,
                                           "description": .string(q.description)]))
            }
            var success: [String: JSONValue] = [:]
            for type in [op.response.contentType] + op.otherContentTypes { success[type] = .object(["schema": op.response.schema]) }
            for (contentType, schema) in op.alternatives { success[contentType] = .object(["schema": schema]) }
            var responses: [String: JSONValue] = [op.response.status: .object(["description": "Success", "content": .object(success)])]
            for other in op.otherResponses {
                responses[other.status] = .object(["description": .string(errorDescriptions[other.status] ?? "Success"),
                                                   "content": .object([other.contentType: .object(["schema": other.schema])])])
            }
            for code in op.errors {
                responses[code] = .object(["description": .string(errorDescriptions[code] ?? "Error"),
                                           "content": .object([json: .object(["schema": op.errorSchemas[code] ?? ref("Error")])])])
            }
            var operation: [String: JSONValue] = [
                "operationId": .string(operationId(op)), "summary": .string(op.summary), "tags": .array([.string(op.tag)]),
                "parameters": .array(parameters), "responses": .object(responses),
            ]
            if let body = op.requestBody { operation["requestBody"] = strictRequestBody(body) }
            if op.isPublic { operation["security"] = .array([]) }
            paths[op.path, default: [:]][op.method] = .object(operation)
        }
        return .object([
            "openapi": "3.1.0",
            "info": .object(["title": "codeinterp", "version": .string(CodeInterpServer.version),
                             "description": "A self-hosted code interpreter: native API and OpenAI-compatible containers and files."]),
            "servers": .array([.object(["url": .string(serverURL)])]),
            "security": .array([.object(["bearer": .array([])]), .object(["apiKey": .array([])])]),
            "paths": .object(paths.mapValues { .object($0) }),
            "components": .object([
                "securitySchemes": .object([
                    "bearer": .object(["type": "http", "scheme": "bearer"]),
                    "apiKey": .object(["type": "apiKey", "in": "header", "name": "X-API-Key"]),
                ]),
                "schemas": .object(schemas),
            ]),
        ])
    }

    /// Request bodies as the server reads them (`FieldReader`): an unknown field is refused, and an optional
    /// field may be null (read as absent).
    static func strictRequestBody(_ body: JSONValue) -> JSONValue {
        guard case .object(var b) = body, case .object(var content)? = b["content"], case .object(var media)? = content[json],
              let schema = media["schema"] else { return body }
        media["schema"] = strictObject(resolve(schema))
        content[json] = .object(media)
        b["content"] = .object(content)
        return .object(b)
    }

    static func resolve(_ schema: JSONValue) -> JSONValue {
        if case .object(let o) = schema, case .string(let r)? = o["$ref"], let name = r.split(separator: "/").last {
            return schemas[String(name)] ?? schema
        }
        return schema
    }

    static func strictObject(_ schema: JSONValue) -> JSONValue {
        guard case .object(var o) = schema, case .object(let properties)? = o["properties"] else { return schema }
        var required: Set<String> = []
        if case .array(let names)? = o["required"] { for case .string(let n) in names { required.insert(n) } }
        var relaxed: [String: JSONValue] = [:]
        for (name, property) in properties {
            relaxed[name] = required.contains(name) ? property : .object(["anyOf": .array([property, .object(["type": "null"])])])
        }
        o["properties"] = .object(relaxed)
        o["additionalProperties"] = false
        return .object(o)
    }

    static let errorDescriptions = [
        "400": "Malformed JSON or an invalid field (the error names it).", "401": "Missing or invalid API key.",
        "403": "Invalid or expired signed URL, or an MCP Origin not allowed.", "404": "Unknown id.", "413": "Body, code or upload too large.",
        "406": "The Accept header lacks what MCP needs.", "415": "Unsupported content type.", "202": "Accepted (a JSON-RPC notification or response).",
        "206": "Partial content (one Range).", "507": "The data directory is full: nothing was kept; retry once there is space.", "503": "Executions cannot run now (no sandbox worker, sandbox set-up failing); see /healthz.", "416": "Range not satisfiable.", "429": "Rate limit or execution queue full, or the model server rate limits (see Retry-After).",
        "502": "The model server failed (refused this server's key, answered 5xx, or broke off its stream).",
    ]

    /// The methods (upper case) the API serves on a concrete path, matched against the documented templates.
    static func methods(forPath path: String) -> [String] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        return routeTemplates.filter { template in
            template.segments.count == segments.count
                && zip(template.segments, segments).allSatisfy { t, s in t.hasPrefix("{") || t == s }
        }.map(\.method).sorted()
    }

    static let routeTemplates: [(segments: [String], method: String)] = operations.map { op in
        (op.path.split(separator: "/").map(String.init), op.method.uppercased())
    }

    /// Unique by construction: the method and the path's words (`get_v1_files_id_content`).
    static func operationId(_ op: Operation) -> String {
        op.method + "_" + op.path.split(separator: "/").map {
            $0.filter { $0.isLetter || $0.isNumber || $0 == "_" }
        }.joined(separator: "_")
    }

    static func json(serverURL: String) -> Data {
        (try? JSONCoding.encoder.encode(document(serverURL: serverURL))) ?? Data("{}".utf8)
    }
}

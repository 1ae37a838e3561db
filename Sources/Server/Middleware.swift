import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// The outermost middleware: request id, CORS (including preflight), turning every thrown error into the error
/// envelope, request metrics and one log line per request.
struct FrontMiddleware: RouterMiddleware {
    typealias Context = ServerRequestContext
    let cors: CORSPolicy
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let origin = request.headers[.origin]
        if request.method == .options, let origin, request.headers[.accessControlRequestMethod] != nil {
            var response = Response(status: .noContent)
            cors.applyPreflight(origin: origin, request: request, to: &response.headers)
            return response
        }
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && (context.endpointPath ?? "NotFound") == "NotFound" {
            // No route for this method: a path the API has under other methods is a 405 that names them.
            let allowed = OpenAPIDocument.methods(forPath: request.uri.path)
            var apiError = APIError.from(error)
            if !allowed.isEmpty {
                apiError = APIError(status: .methodNotAllowed, message: "\(request.method) is not allowed here; use \(allowed.joined(separator: ", "))",
                                    type: "invalid_request_error", code: "method_not_allowed")
                apiError.headers = [(.allow, allowed.joined(separator: ", "))]
            }
            response = apiError.response()
        } catch {
            let apiError = APIError.from(error)
            if apiError.status.code >= 500 {
                context.logger.error("request failed", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            }
            response = apiError.response()
        }
        if let origin { cors.apply(origin: origin, to: &response.headers) }
        response.headers[.init("X-Request-Id")!] = context.requestID
        let route = context.endpointPath.map { $0 == "NotFound" ? "unmatched" : $0 } ?? "unmatched"
        metrics.recordRequest(method: request.method.rawValue, route: route, status: response.status.code)
        context.logger.debug("request", metadata: ["method": "\(request.method)", "route": "\(route)",
                                                  "status": "\(response.status.code)"])
        return response
    }
}

/// Which browser origins may call the API.
struct CORSPolicy: Sendable {
    let origins: [String]
    static let allowedHeaders = "Authorization, Content-Type, X-API-Key, Accept, Range, If-None-Match, Last-Event-ID, "
        + "Mcp-Session-Id, MCP-Protocol-Version"
    static let exposedHeaders = "Retry-After, Content-Disposition, Content-Range, Content-Length, ETag, X-Request-Id, "
        + "X-Codeinterp-Session-Id, Mcp-Session-Id"
    static let methods = "GET, POST, DELETE, OPTIONS"

    func allowed(_ origin: String) -> String? {
        if origins.contains("*") { return "*" }
        return origins.contains(origin) ? origin : nil
    }

    func apply(origin: String, to headers: inout HTTPFields) {
        guard let allow = allowed(origin) else { return }
        headers[.accessControlAllowOrigin] = allow
        headers[.accessControlExposeHeaders] = Self.exposedHeaders
        if allow != "*" { headers[.vary] = "Origin" }
    }

    func applyPreflight(origin: String, request: Request, to headers: inout HTTPFields) {
        guard let allow = allowed(origin) else { return }
        headers[.accessControlAllowOrigin] = allow
        headers[.accessControlAllowMethods] = Self.methods
        headers[.accessControlAllowHeaders] = request.headers[.accessControlRequestHeaders] ?? Self.allowedHeaders
        headers[.accessControlMaxAge] = "600"
        if allow != "*" { headers[.vary] = "Origin" }
    }
}

/// API keys (`Authorization: Bearer KEY` or `X-API-Key: KEY`) on every route except the public ones, then the
/// per-key rate limit. A file's content route also accepts a valid signed URL instead of a key.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = ServerRequestContext
    let keys: Set<String>
    let signer: URLSigner
    let limiter: RateLimiter

    /// The page (`WebRoutes.swift`) is public too: it holds no data, and signs in with a key of its own.
    static let publicRoutes: Set<String> = ["/healthz", "/openapi.json", "/", "/web/{file}"]
    static let signedRoute = "/v1/files/{id}/content"

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let route = context.endpointPath ?? ""
        if Self.publicRoutes.contains(route) || context.local { return try await next(request, context) }
        let query = request.uri.queryParameters
        if route == Self.signedRoute, let expires = query["expires"], Int(expires) == nil {
            throw APIError.invalidRequest("\"expires\" must be an integer (unix seconds)", param: "expires")
        }
        if route == Self.signedRoute, query["sig"] != nil, let id = context.parameters.get("id") {
            switch signer.verify(fileId: id, expires: query["expires"].map(String.init), sig: query["sig"].map(String.init)) {
            case .valid: return try await next(request, context)
            case .expired:
                throw APIError(status: .forbidden, message: "this signed URL has expired; fetch the file object again for a fresh url",
                               type: "permission_error", param: "expires", code: "signed_url_expired")
            case .invalid:
                throw APIError(status: .forbidden, message: "the signature of this URL is not valid for this file",
                               type: "permission_error", param: "sig", code: "invalid_signature")
            }
        }
        guard let key = Self.key(from: request) else {
            throw APIError.unauthorized("missing API key: send \"Authorization: Bearer <key>\" or \"X-API-Key: <key>\"")
        }
        guard keys.contains(key) else {
            throw APIError.unauthorized("invalid API key")
        }
        if let wait = limiter.take(key: key) {
            throw APIError.rateLimited("rate limit of \(limiter.perMinute) requests per minute exceeded for this key; retry in \(wait) s",
                                       retryAfter: wait)
        }
        var context = context
        context.apiKey = key
        context.logger[metadataKey: "api_key"] = .string(String(key.prefix(6)) + "…")
        return try await next(request, context)
    }

    static func key(from request: Request) -> String? {
        if let auth = request.headers[.authorization] {
            let parts = auth.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" {
                return parts[1].trimmingCharacters(in: .whitespaces)
            }
        }
        if let key = request.headers[.init("X-API-Key")!] { return key.trimmingCharacters(in: .whitespaces) }
        return nil
    }
}

import FileStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Responses
import Sandbox

/// Every error the API returns: `{"error":{"message","type","param","code"}}` (all four keys, null when unknown),
/// with the matching HTTP status. The `type` values are OpenAI's, so their SDKs map them to the same exceptions.
public struct APIError: Error, Sendable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?
    /// Extra response headers (`Retry-After`, `Content-Range`, `WWW-Authenticate`).
    public var headers: [(HTTPField.Name, String)] = []

    public init(status: HTTPResponse.Status, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public var description: String { "\(status.code) \(type): \(message)" }

    static func invalidRequest(_ message: String, param: String? = nil, code: String? = "invalid_request") -> APIError {
        APIError(status: .badRequest, message: message, type: "invalid_request_error", param: param, code: code)
    }

    static func notFound(_ what: String, id: String, param: String = "id") -> APIError {
        APIError(status: .notFound, message: "no \(what) with id \"\(id)\" (it may have expired or been deleted)",
                 type: "invalid_request_error", param: param, code: "not_found")
    }

    static func unauthorized(_ message: String) -> APIError {
        var e = APIError(status: .unauthorized, message: message, type: "authentication_error", code: "invalid_api_key")
        e.headers = [(.wwwAuthenticate, "Bearer")]
        return e
    }

    static func tooLarge(_ message: String, param: String? = nil) -> APIError {
        APIError(status: .contentTooLarge, message: message, type: "invalid_request_error", param: param, code: "too_large")
    }

    static func rateLimited(_ message: String, retryAfter: Int, code: String = "rate_limit_exceeded") -> APIError {
        var e = APIError(status: .tooManyRequests, message: message, type: "rate_limit_error", code: code)
        e.headers = [(.retryAfter, String(max(1, retryAfter)))]
        return e
    }

    /// A failed write to the data directory: 507 when it is full (the client may retry later, nothing was kept),
    /// else a 500.
    static func storageFailure(_ message: String, errno code: Int32?) -> APIError {
        let text = code.map { "\(message): \(String(cString: strerror($0)))" } ?? message
        guard let code, code == ENOSPC || code == EDQUOT else { return .internalError(text) }
        return APIError(status: .init(code: 507, reasonPhrase: "Insufficient Storage"), message: text + " (nothing was kept)", type: "server_error",
                        code: "insufficient_storage")
    }

    static func internalError(_ message: String) -> APIError {
        APIError(status: .internalServerError, message: message, type: "server_error", code: "internal_error")
    }

    struct Envelope: Encodable {
        struct Body: Encodable {
            var message: String
            var type: String
            @EncodedAsNull var param: String?
            @EncodedAsNull var code: String?
        }
        var error: Body
    }

    var jsonBody: Data {
        (try? JSONCoding.encoder.encode(Envelope(error: .init(message: message, type: type, param: param, code: code))))
            ?? Data(#"{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}"#.utf8)
    }

    func response() -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        for (name, value) in self.headers { headers[name] = value }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: jsonBody)))
    }

    /// Maps anything thrown while handling a request to the envelope.
    static func from(_ error: any Error) -> APIError {
        switch error {
        case let e as APIError:
            return e
        case let e as ResponsesError:
            return APIError(e)
        case let e as EngineError:
            return from(engine: e)
        case let e as FileStoreError:
            switch e.code {
            case .tooLarge: return .tooLarge(e.message)
            case .invalidArgument: return .invalidRequest(e.message)
            case .io: return .storageFailure(e.message, errno: e.errno)
            }
        case let e as HTTPError:
            switch e.status {
            case .notFound:
                return APIError(status: .notFound, message: "no such route", type: "invalid_request_error", code: "unknown_route")
            case .methodNotAllowed:
                return APIError(status: .methodNotAllowed, message: "method not allowed on this route", type: "invalid_request_error", code: "method_not_allowed")
            case .contentTooLarge:
                return .tooLarge(e.body ?? "the request body is too large")
            default:
                return APIError(status: e.status, message: e.body ?? e.status.reasonPhrase,
                                type: e.status.code >= 500 ? "server_error" : "invalid_request_error")
            }
        case is NIOTooManyBytesError:
            return .tooLarge("the request body is too large")
        case is CancellationError:
            return APIError(status: .serviceUnavailable, message: "the request was cancelled (the server is shutting down)",
                            type: "server_error", code: "cancelled")
        default:
            return .internalError("internal error: \(error)")
        }
    }

    static func from(engine e: EngineError) -> APIError {
        switch EngineErrorKind(e) {
        case .badRequest: return .invalidRequest(e.message)
        case .notFound: return APIError(status: .notFound, message: e.message, type: "invalid_request_error", code: "not_found")
        case .busy: return .rateLimited(e.message, retryAfter: 1, code: "queue_full")
        case .tooLarge: return .tooLarge(e.message)
        case .profile: return APIError(status: .badRequest, message: e.message, type: "invalid_request_error", param: "profile", code: "invalid_profile")
        case .unavailable:
            return APIError(status: .serviceUnavailable, message: e.message, type: "server_error", code: "sandbox_unavailable")
        }
    }
}

/// How the server treats an engine error code.
enum EngineErrorKind {
    case badRequest, notFound, busy, tooLarge, profile, unavailable

    init(_ e: EngineError) {
        switch e.code {
        case .badRequest: self = .badRequest
        case .profile: self = .profile
        case .notFound: self = .notFound
        case .busy: self = .busy
        case .tooLarge: self = .tooLarge
        case .workerFailed, .workerDied, .rejected, .sandboxSetup: self = .unavailable
        }
    }
}

enum JSONCoding {
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return e
    }()
}

import Hummingbird
import Logging

/// Per-request state shared by the middleware and the handlers.
public struct ServerRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Short id of this request (also the `X-Request-Id` response header and the `request_id` log metadata).
    public var requestID: String
    /// The API key that authenticated the request, nil for public routes and signed URLs.
    public var apiKey: String?
    /// Came in on the local socket (see `LocalSocket`): trusted as the data directory's owner.
    public let local: Bool

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        if case .unixDomainSocket = source.channel.localAddress { local = true } else { local = false }
        requestID = RequestIDs.next()
        logger[metadataKey: "request_id"] = .string(requestID)
    }
}

enum RequestIDs {
    static func next() -> String {
        "req_" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
    }
}

import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import InterpreterCore
import NIOCore

/// The page at `/`: a chat and a notebook over this API, as plain HTML, CSS and JavaScript modules
/// (`Sources/Server/Web`) built into the binary, so that an installed `codeinterp` serves it with nothing else on
/// disk and the page loads nothing from anywhere else. The page and its files are public: they hold no data. The
/// page signs in with the API key like any client (`/?token=KEY` once, then the key lives in the browser's local
/// storage and goes out as an `Authorization` header): the API key rules of every API route stay as they are.
struct WebAssets: Sendable {
    struct Asset: Sendable {
        var bytes: [UInt8]
        var contentType: String
        var etag: String
    }

    /// Every file of `Sources/Server/Web` (a test keeps this table equal to the folder).
    static let builtIn: [String: [UInt8]] = [
        "index.html": PackageResources.index_html,
        "app.css": PackageResources.app_css,
        "icon.svg": PackageResources.icon_svg,
        "app.js": PackageResources.app_js,
        "api.js": PackageResources.api_js,
        "auth.js": PackageResources.auth_js,
        "dom.js": PackageResources.dom_js,
        "markdown.js": PackageResources.markdown_js,
        "outputs.js": PackageResources.outputs_js,
        "chat.js": PackageResources.chat_js,
        "notebook.js": PackageResources.notebook_js,
    ]

    static let contentTypes = [
        "html": "text/html; charset=utf-8", "css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8",
        "svg": "image/svg+xml",
    ]

    /// Scripts only from this origin (the page's modules: no inline script, no `eval`, no handler attributes),
    /// and no HTML string reaches a DOM sink (Trusted Types) but through the one policy that fills sandboxed
    /// frames. Those frames show HTML that executions produced (a DataFrame's table) and inherit this policy;
    /// `style-src 'unsafe-inline'` is for them: such HTML styles itself with `<style>` and `style=""`, and it runs
    /// no script either way (the frames are sandboxed without `allow-scripts`).
    static let contentSecurityPolicy = [
        "default-src 'none'", "script-src 'self'", "style-src 'self' 'unsafe-inline'", "img-src 'self' data: blob:",
        "connect-src 'self'", "frame-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
        "require-trusted-types-for 'script'", "trusted-types sandboxed-frame",
    ].joined(separator: "; ")

    /// Set: the page's files are read from here at each request instead (`web_dir`, for working on the page).
    let directory: String?

    /// The file called `name` (one path segment: `app.js`), or nil.
    func asset(_ name: String) -> Asset? {
        guard let dot = name.lastIndex(of: "."), let type = Self.contentTypes[String(name[name.index(after: dot)...])],
              !name.hasPrefix("."), !name.contains("/"), !name.contains("\\") else { return nil }
        let bytes: [UInt8]
        if let directory {
            guard let data = FileManager.default.contents(atPath: directory + "/" + name) else { return nil }
            bytes = Array(data)
        } else {
            guard let builtIn = Self.builtIn[name] else { return nil }
            bytes = builtIn
        }
        let digest = SHA256.hash(data: bytes).prefix(12).lowercaseHex
        return Asset(bytes: bytes, contentType: type, etag: "\"\(digest)\"")
    }
}

extension CodeInterpServer {
    func addWebRoutes(to router: Router<ServerRequestContext>) {
        router.get("/") { [self] request, _ in try webAsset(request, name: "index.html") }
        router.get("/web/{file}") { [self] request, context in try webAsset(request, name: try context.parameters.require("file")) }
    }

    func webAsset(_ request: Request, name: String) throws -> Response {
        guard let asset = web.asset(name) else {
            throw APIError(status: .notFound, message: "the page has no file called \"\(name)\"", type: "invalid_request_error",
                           param: "file", code: "not_found")
        }
        var headers = HTTPFields()
        headers[.contentType] = asset.contentType
        headers[.contentSecurityPolicy] = WebAssets.contentSecurityPolicy
        headers[.init("X-Content-Type-Options")!] = "nosniff"
        headers[.init("X-Frame-Options")!] = "DENY"
        // `/?token=KEY` must not travel anywhere in a Referer (the page also drops it from the address bar).
        headers[.init("Referrer-Policy")!] = "no-referrer"
        headers[.init("Cross-Origin-Opener-Policy")!] = "same-origin"
        // Revalidated on every load: a new binary's page is seen at once, an unchanged one costs a 304.
        headers[.cacheControl] = "no-cache"
        headers[.eTag] = asset.etag
        if let inm = request.headers[.ifNoneMatch], Self.matches(ifNoneMatch: inm, etag: asset.etag) {
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: asset.bytes)))
    }
}

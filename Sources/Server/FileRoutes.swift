import FileStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// The file object of `/v1/files/{id}`: codeinterp's stored-file fields plus OpenAI's `file` keys, so both the
/// native clients and OpenAI SDKs (`client.files.retrieve`) read it.
struct FileObject: Encodable {
    var id: String
    var object = "file"
    // OpenAI's keys
    var bytes: Int64
    var created_at: Int
    @EncodedAsNull var expires_at: Int?
    var filename: String
    var purpose: String
    var status = "processed"
    // codeinterp's keys
    var name: String
    var path: String
    var mime_type: String
    var size_bytes: Int64
    var sha256: String
    @EncodedAsNull var session_id: String?
    var source: String
    var kind: String
    var url: String

    init(_ f: StoredFile, url: String) {
        id = f.id
        bytes = f.sizeBytes
        created_at = Int(f.createdAt.timeIntervalSince1970)
        expires_at = f.expiresAt.map { Int($0.timeIntervalSince1970) }
        filename = f.name
        purpose = f.source == "user" ? "user_data" : "assistants_output"
        name = f.name
        path = f.path
        mime_type = f.mimeType
        size_bytes = f.sizeBytes
        sha256 = f.sha256
        session_id = f.sessionId
        source = f.source
        kind = f.kind
        self.url = url
    }
}

struct DeletedObject: Encodable {
    var id: String
    var object: String
    var deleted = true
}

extension CodeInterpServer {
    func storedFile(_ id: String, param: String = "id") throws -> StoredFile {
        guard let file = try engine.store.file(id: id) else { throw APIError.notFound("file", id: id, param: param) }
        return file
    }

    /// `POST /v1/files` (OpenAI's Files API): a multipart upload (field `file`; `purpose` is accepted and not
    /// used) stored on its own, to be attached to a message (`input_file` with its `file_id`) or copied into a
    /// session or container by id.
    func uploadFile(_ request: Request) async throws -> Response {
        guard let boundary = SpooledUpload.boundary(contentType: request.headers[.contentType] ?? "") else {
            throw APIError(status: .unsupportedMediaType, message: "send the file as multipart/form-data with a part named \"file\"",
                           type: "invalid_request_error", param: "file", code: "unsupported_media_type")
        }
        if let length = request.headers[.contentLength].flatMap(Int64.init), length > configuration.maxUploadBytes + 64 * 1024 {
            throw APIError.tooLarge("the upload is larger than the limit of \(configuration.maxUploadBytes) bytes", param: "file")
        }
        let upload = try await SpooledUpload.receive(request.body, boundary: boundary, maxBytes: configuration.maxUploadBytes,
                                                     spoolDirectory: engine.configuration.dataDirectory + "/work")
        let name: String
        do { name = try FileNames.sanitize(upload.filename) } catch {
            throw APIError.invalidRequest(error.message, param: "file", code: "invalid_file_name")
        }
        let (store, retention, maxBytes) = (engine.store, engine.configuration.fileRetentionSeconds, configuration.maxUploadBytes)
        let fd = upload.fd
        let file = try await blockingIO {
            try store.store(fd: fd, name: name, path: "", source: "user", retention: .seconds(retention), maxBytes: maxBytes)
        }
        withExtendedLifetime(upload) {}
        return try jsonResponse(FileObject(file, url: signedURL(fileId: file.id)))
    }

    func fileObject(_ id: String) throws -> Response {
        let file = try storedFile(id)
        return try jsonResponse(FileObject(file, url: signedURL(fileId: file.id)))
    }

    func deleteFile(_ id: String) throws -> Response {
        let file = try storedFile(id)
        try removeStoredFile(file)
        return try jsonResponse(DeletedObject(id: file.id, object: "file"))
    }

    /// Streams a stored file's bytes with caching and range support.
    func fileContent(_ request: Request, id: String) throws -> Response {
        let file = try storedFile(id)
        return try contentResponse(request, file: file)
    }

    func contentResponse(_ request: Request, file: StoredFile) throws -> Response {
        let etag = "\"\(file.sha256)\""
        var headers = HTTPFields()
        headers[.eTag] = etag
        headers[.acceptRanges] = "bytes"
        headers[.cacheControl] = "private, max-age=3600"
        headers[.contentType] = Self.contentType(file.mimeType)
        headers[.contentDisposition] = Self.contentDisposition(name: file.name, mimeType: file.mimeType)
        // The bytes were written by sandboxed code: never let a browser run them as part of this origin.
        headers[.init("X-Content-Type-Options")!] = "nosniff"
        headers[.contentSecurityPolicy] = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"

        if let inm = request.headers[.ifNoneMatch], Self.matches(ifNoneMatch: inm, etag: etag) {
            return Response(status: .notModified, headers: headers)
        }

        let size = file.sizeBytes
        var start: Int64 = 0, end: Int64 = size - 1
        var status = HTTPResponse.Status.ok
        if let range = request.headers[.range] {
            switch Self.parseRange(range, size: size) {
            case .none:
                break
            case .unsatisfiable:
                var e = APIError(status: .rangeNotSatisfiable, message: "the range \"\(range)\" is outside the file's \(size) bytes",
                                 type: "invalid_request_error", param: "Range", code: "range_not_satisfiable")
                e.headers = [(.contentRange, "bytes */\(size)"), (.acceptRanges, "bytes")]
                throw e
            case .range(let a, let b):
                start = a
                end = b
                status = .partialContent
                headers[.contentRange] = "bytes \(a)-\(b)/\(size)"
            }
        }
        let length = max(0, end - start + 1)
        headers[.contentLength] = String(length)
        guard let path = engine.store.blobPath(id: file.id) else { throw APIError.notFound("file", id: file.id) }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            if errno == ENOENT { throw APIError.notFound("file", id: file.id) }
            throw APIError.internalError("cannot open the stored file: \(String(cString: strerror(errno)))")
        }
        let handle = Descriptor(fd)
        let (first, total) = (start, length)
        // Read on the blocking-I/O threads, a chunk at a time, from the descriptor opened above: a file deleted
        // while it downloads is still read whole.
        let body = ResponseBody(contentLength: Int(length)) { writer in
            var offset = first
            var remaining = total
            while remaining > 0 {
                let (want, at) = (Int(min(Int64(Self.chunkBytes), remaining)), off_t(offset))
                let chunk = try await blockingIO { try Self.read(handle, count: want, at: at) }
                try await writer.write(chunk)
                offset += Int64(chunk.readableBytes)
                remaining -= Int64(chunk.readableBytes)
            }
            try await writer.finish(nil)
        }
        return Response(status: status, headers: headers, body: body)
    }

    /// What one read of a download asks for.
    static let chunkBytes = 256 << 10

    /// Up to `count` bytes of the file at `offset` (at least one: a file shorter than its row says is an error).
    static func read(_ file: Descriptor, count: Int, at offset: off_t) throws -> ByteBuffer {
        var buffer = ByteBuffer()
        // Straight into the buffer the response writes: no zeroed array to copy from.
        _ = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { bytes in
            while true {
                let n = pread(file.fd, bytes.baseAddress, count, offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw APIError.internalError("the stored file ended early") }
                return n
            }
        }
        return buffer
    }

    static func contentType(_ mime: String) -> String {
        mime.hasPrefix("text/") || mime == "application/json" ? mime + "; charset=utf-8" : mime
    }

    /// `inline` for images a browser can show, `attachment` otherwise; an ASCII `filename` plus the exact
    /// UTF-8 name in `filename*` (RFC 6266 / RFC 8187).
    static func contentDisposition(name: String, mimeType: String) -> String {
        let disposition = mimeType.hasPrefix("image/") ? "inline" : "attachment"
        let ascii = String(name.unicodeScalars.map { s -> Character in
            (s.isASCII && s.value >= 0x20 && s != "\"" && s != "\\" && s.value != 0x7f) ? Character(s) : "_"
        })
        let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!#$&+^`|".utf8)
        let encoded = name.utf8.map { unreserved.contains($0) ? String(UnicodeScalar($0)) : String(format: "%%%02X", $0) }.joined()
        return "\(disposition); filename=\"\(ascii)\"; filename*=UTF-8''\(encoded)"
    }

    static func matches(ifNoneMatch header: String, etag: String) -> Bool {
        header.split(separator: ",").contains { item in
            var t = item.trimmingCharacters(in: .whitespaces)
            if t == "*" { return true }
            if t.hasPrefix("W/") { t.removeFirst(2) }
            return t == etag
        }
    }

    enum RangeRequest: Equatable { case none, unsatisfiable, range(Int64, Int64) }

    /// One `bytes=` range (`a-b`, `a-`, `-n`). Anything else that is not bytes or several ranges: the whole file.
    static func parseRange(_ header: String, size: Int64) -> RangeRequest {
        let h = header.trimmingCharacters(in: .whitespaces)
        guard h.lowercased().hasPrefix("bytes=") else { return .none }
        let spec = h.dropFirst(6).trimmingCharacters(in: .whitespaces)
        if spec.contains(",") { return .none }
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        guard parts.count == 2 else { return .none }
        if parts[0].isEmpty {
            guard let n = Int64(parts[1]), n >= 0 else { return .none }
            if n == 0 || size == 0 { return .unsatisfiable }
            return .range(max(0, size - n), size - 1)
        }
        guard let a = Int64(parts[0]), a >= 0 else { return .none }
        if a >= size { return .unsatisfiable }
        if parts[1].isEmpty { return .range(a, size - 1) }
        guard let b = Int64(parts[1]), b >= a else { return .none }
        return .range(a, min(b, size - 1))
    }
}

/// Closes a file descriptor when the last reference (the response body) goes away.
final class Descriptor: Sendable {
    let fd: Int32
    init(_ fd: Int32) { self.fd = fd }
    deinit { close(fd) }
}

import Foundation
import HTTPTypes
import Hummingbird
import MultipartKit
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// A file received as the `file` field of a multipart/form-data body, spooled to an unlinked temporary file as
/// it arrives (never held in memory whole), with its client-given name.
final class SpooledUpload {
    let fd: Int32
    let filename: String
    let size: Int64

    private init(fd: Int32, filename: String, size: Int64) {
        self.fd = fd
        self.filename = filename
        self.size = size
    }

    deinit { close(fd) }

    /// The boundary of a `multipart/form-data` content type, or nil for another type.
    static func boundary(contentType: String) -> String? {
        let parts = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.first?.lowercased() == "multipart/form-data" else { return nil }
        for part in parts.dropFirst() {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            if kv.count == 2, kv[0].lowercased() == "boundary" {
                let value = kv[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                return value.isEmpty ? nil : value
            }
        }
        return nil
    }

    /// Reads the body, keeping the first part named `file`. Throws 413 past `maxBytes` of file content, 400 when
    /// the body is not valid multipart, has no `file` part, or that part has no filename.
    static func receive(_ body: RequestBody, boundary: String, maxBytes: Int64, spoolDirectory: String) async throws -> SpooledUpload {
        let template = spoolDirectory + "/.upload-XXXXXX"
        var path = Array(template.utf8CString)
        let fd = path.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw APIError.storageFailure("cannot create an upload spool file", errno: errno) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        path.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }

        let state = ParseState(fd: fd, maxBytes: maxBytes)
        let parser = MultipartParser(boundary: boundary)
        parser.onHeader = { name, value in state.header(name: name, value: value) }
        parser.onBody = { buffer in state.body(&buffer) }
        parser.onPartComplete = { state.partComplete() }
        do {
            for try await chunk in body {
                do { try parser.execute(chunk) } catch {
                    throw APIError.invalidRequest("the multipart/form-data body is malformed", param: "file")
                }
                if let error = state.error { throw error }
            }
        } catch {
            close(fd)
            throw error
        }
        guard state.fileDone else {
            close(fd)
            throw APIError.invalidRequest(state.sawFilePart ? "the multipart body ended inside the file part"
                                          : "the multipart/form-data body has no part named \"file\"", param: "file")
        }
        // A part without a filename is a form field, not a file; HTTP clients drop an empty name altogether.
        guard let filename = state.filename, !filename.trimmingCharacters(in: .whitespaces).isEmpty else {
            close(fd)
            throw APIError.invalidRequest("the \"file\" part has no file name: send it as a file with a name "
                                          + "(curl -F file=@PATH, or a (name, bytes) tuple in the openai package)",
                                          param: "file", code: "invalid_file_name")
        }
        lseek(fd, 0, SEEK_SET)
        return SpooledUpload(fd: fd, filename: filename, size: state.written)
    }

    /// Parser callbacks' state (the parser runs on one task, chunk after chunk).
    private final class ParseState {
        let fd: Int32
        let maxBytes: Int64
        var headers: [(String, String)] = []
        var inFilePart = false
        var sawFilePart = false
        var fileDone = false
        var filename: String?
        var written: Int64 = 0
        var error: APIError?

        init(fd: Int32, maxBytes: Int64) {
            self.fd = fd
            self.maxBytes = maxBytes
        }

        func header(name: String, value: String) {
            headers.append((name, value))
            guard name.lowercased() == "content-disposition", !sawFilePart else { return }
            let params = SpooledUpload.dispositionParameters(value)
            if params["name"] == "file" {
                inFilePart = true
                sawFilePart = true
                filename = params["filename*"] ?? params["filename"]
            }
        }

        func body(_ buffer: inout ByteBuffer) {
            guard inFilePart, error == nil else { return }
            let count = buffer.readableBytes
            written += Int64(count)
            if written > maxBytes {
                error = .tooLarge("the uploaded file is larger than the limit of \(maxBytes) bytes", param: "file")
                return
            }
            let ok = buffer.withUnsafeReadableBytes { raw -> Bool in
                var offset = 0
                while offset < raw.count {
                    let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        return false
                    }
                    offset += n
                }
                return true
            }
            if !ok { error = .storageFailure("cannot spool the upload", errno: errno) }
        }

        func partComplete() {
            if inFilePart { fileDone = true }
            inFilePart = false
            headers = []
        }
    }

    /// `form-data; name="file"; filename="a.csv"; filename*=UTF-8''%C3%A9.csv` -> parameters (filename* decoded).
    static func dispositionParameters(_ value: String) -> [String: String] {
        var result: [String: String] = [:]
        var rest = Substring(value)
        // Skip the disposition type.
        if let semi = rest.firstIndex(of: ";") { rest = rest[rest.index(after: semi)...] } else { return result }
        while !rest.isEmpty {
            rest = rest.drop { $0 == " " || $0 == ";" || $0 == "\t" }
            guard let eq = rest.firstIndex(of: "=") else { break }
            let key = rest[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            rest = rest[rest.index(after: eq)...]
            var v = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var escaped = false
                while let c = rest.first {
                    rest = rest.dropFirst()
                    if escaped { v.append(c); escaped = false; continue }
                    if c == "\\" { escaped = true; continue }
                    if c == "\"" { break }
                    v.append(c)
                }
            } else {
                let end = rest.firstIndex(of: ";") ?? rest.endIndex
                v = rest[..<end].trimmingCharacters(in: .whitespaces)
                rest = rest[end...]
            }
            if key == "filename*" {
                // RFC 8187: charset'language'percent-encoded
                let pieces = v.split(separator: "'", maxSplits: 2, omittingEmptySubsequences: false)
                if pieces.count == 3, pieces[0].lowercased() == "utf-8", let decoded = String(pieces[2]).removingPercentEncoding {
                    result[key] = decoded
                }
            } else {
                result[key] = v
            }
        }
        return result
    }
}

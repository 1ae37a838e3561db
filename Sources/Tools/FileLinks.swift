import FileStore
import Foundation
import InterpreterCore

/// A stored file a tool result or an answer links to.
public struct FileReference: Sendable, Equatable {
    public var id: String
    public var name: String
    /// `/mnt/data/NAME` for files of /mnt/data; "" for captured figures.
    public var path: String
    public var mimeType: String
    public var sizeBytes: Int64
    public var sessionId: String?

    public init(id: String, name: String, path: String, mimeType: String, sizeBytes: Int64, sessionId: String?) {
        self.id = id
        self.name = name
        self.path = path
        self.mimeType = mimeType
        self.sizeBytes = sizeBytes
        self.sessionId = sessionId
    }

    public init(_ file: StoredFile) {
        self.init(id: file.id, name: file.name, path: file.path, mimeType: file.mimeType, sizeBytes: file.sizeBytes,
                  sessionId: file.sessionId)
    }

    public init(_ ref: StoredFileRef, sessionId: String?) {
        self.init(id: ref.id, name: ref.name, path: ref.path, mimeType: ref.mimeType, sizeBytes: ref.sizeBytes,
                  sessionId: sessionId)
    }

    /// The path under /mnt/data (`sub/x.csv`), or the name for a figure.
    public var relativePath: String {
        path.hasPrefix("/mnt/data/") ? String(path.dropFirst("/mnt/data/".count)) : name
    }
}

/// Turns a stored file into the URL the model and the user see. The HTTP server supplies signed absolute URLs;
/// the CLI uses `file://` URLs (`LocalFileURLs`) or files it copied next to its transcript.
public protocol FileURLProvider: Sendable {
    func url(for file: FileReference) -> String
}

/// A provider made of a closure.
public struct ClosureFileURLs: FileURLProvider {
    let make: @Sendable (FileReference) -> String
    public init(_ make: @escaping @Sendable (FileReference) -> String) { self.make = make }
    public func url(for file: FileReference) -> String { make(file) }
}

/// `file://` URLs of the blobs in the store (for a user on the same machine).
public struct LocalFileURLs: FileURLProvider {
    let filesDirectory: String
    public init(store: FileStore) { filesDirectory = store.filesDirectory }
    public func url(for file: FileReference) -> String {
        URL(fileURLWithPath: filesDirectory + "/" + file.id).absoluteString
    }
}

/// An OpenAI `container_file_citation` annotation for a link rewritten in an answer.
public struct FileCitation: Sendable, Equatable, Codable {
    public var type = "container_file_citation"
    public var containerId: String
    public var fileId: String
    public var filename: String
    /// Unicode scalar offsets of the rewritten URL in the returned text (end exclusive).
    public var startIndex: Int
    public var endIndex: Int
    /// The URL the link now points to.
    public var url: String

    enum CodingKeys: String, CodingKey {
        case type, filename, url
        case containerId = "container_id", fileId = "file_id", startIndex = "start_index", endIndex = "end_index"
    }

    public var json: JSONValue {
        ["type": .string(type), "container_id": .string(containerId), "file_id": .string(fileId),
         "filename": .string(filename), "start_index": .int(startIndex), "end_index": .int(endIndex), "url": .string(url)]
    }
}

/// An answer whose `sandbox:/mnt/data/...` links were rewritten.
public struct ResolvedText: Sendable, Equatable {
    public var text: String
    public var citations: [FileCitation]
    /// Linked paths (`/mnt/data/NAME`) that match no file of the session: left as they were.
    public var unresolved: [String]
}

/// Rewrites `sandbox:/mnt/data/NAME` links (inside markdown links or bare) into the URLs of a session's files.
public enum LinkResolver {
    static let prefix = Array("sandbox:/mnt/data/".unicodeScalars)

    public static func resolve(_ text: String, files: [FileReference], containerId: String,
                               urls: any FileURLProvider) -> ResolvedText {
        scan(text, files: files, containerId: containerId, urls: urls)
    }

    /// The citations of the `sandbox:/mnt/data/...` links in `text` without rewriting it (what OpenAI's Responses
    /// API does: the text keeps `sandbox:` links and each `container_file_citation` spans one of them). The
    /// citations' `url` is empty.
    public static func citations(in text: String, files: [FileReference], containerId: String) -> ResolvedText {
        scan(text, files: files, containerId: containerId, urls: nil)
    }

    static func scan(_ text: String, files: [FileReference], containerId: String,
                     urls: (any FileURLProvider)?) -> ResolvedText {
        var byPath: [String: FileReference] = [:]
        for file in files { byPath[file.relativePath] = file }
        let scalars = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var outCount = 0
        var citations: [FileCitation] = []
        var unresolved: [String] = []
        var i = 0
        while i < scalars.count {
            guard matchesPrefix(scalars, at: i) else {
                out.append(scalars[i])
                outCount += 1
                i += 1
                continue
            }
            // Inside a markdown link target `](...)` the name runs to the closing parenthesis (names may hold
            // spaces); a bare link ends at whitespace or a delimiter.
            let inMarkdown = i >= 2 && scalars[i - 1] == "(" && scalars[i - 2] == "]"
            var end = i + prefix.count
            while end < scalars.count {
                let c = scalars[end]
                if c == ")" || c == "\n" || (!inMarkdown && (c.properties.isWhitespace || "]>\"'`<".unicodeScalars.contains(c))) {
                    break
                }
                end += 1
            }
            var candidateEnd = end
            var match: FileReference? = nil
            // A bare link may be followed by sentence punctuation: try the longest name first.
            while candidateEnd > i + prefix.count {
                let name = String(String.UnicodeScalarView(scalars[(i + prefix.count)..<candidateEnd]))
                if let file = byPath[name] ?? byPath[name.removingPercentEncoding ?? name] {
                    match = file
                    break
                }
                guard ".,;:!?".unicodeScalars.contains(scalars[candidateEnd - 1]) else { break }
                candidateEnd -= 1
            }
            if let match {
                let url = urls?.url(for: match) ?? ""
                let start = outCount
                if urls == nil {
                    out.append(contentsOf: scalars[i..<candidateEnd])
                    outCount += candidateEnd - i
                } else {
                    out.append(contentsOf: url.unicodeScalars)
                    outCount += url.unicodeScalars.count
                }
                citations.append(FileCitation(containerId: containerId, fileId: match.id, filename: match.name,
                                              startIndex: start, endIndex: outCount, url: url))
                i = candidateEnd
            } else {
                let original = scalars[i..<end]
                var name = String(String.UnicodeScalarView(scalars[(i + prefix.count)..<end]))
                while let last = name.unicodeScalars.last, ".,;:!?".unicodeScalars.contains(last) { name.removeLast() }
                unresolved.append("/mnt/data/" + name)
                out.append(contentsOf: original)
                outCount += original.count
                i = end
            }
        }
        return ResolvedText(text: String(out), citations: citations, unresolved: unresolved)
    }

    static func matchesPrefix(_ scalars: [Unicode.Scalar], at i: Int) -> Bool {
        guard i + prefix.count <= scalars.count else { return false }
        for k in 0..<prefix.count where scalars[i + k] != prefix[k] { return false }
        return true
    }
}

/// MIME types by file-name extension, for the files model-written code typically produces or users upload.
public enum MimeTypes {
    public static let fallback = "application/octet-stream"

    /// The MIME type for a file name (or a path: only its last component counts). The extension is matched
    /// case-insensitively; names without one, dot-files such as `.env`, and unknown extensions get
    /// `application/octet-stream`.
    public static func forFileName(_ name: String) -> String {
        guard let ext = fileExtension(name) else { return fallback }
        return byExtension[ext] ?? fallback
    }

    static func fileExtension(_ name: String) -> String? {
        let base = name.split(separator: "/", omittingEmptySubsequences: false).last ?? Substring(name)
        guard let dot = base.lastIndex(of: "."), dot != base.startIndex else { return nil }
        let ext = base[base.index(after: dot)...]
        return ext.isEmpty ? nil : ext.lowercased()
    }

    public static let byExtension: [String: String] = [
        // Images
        "png": "image/png",
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "gif": "image/gif",
        "svg": "image/svg+xml",
        "webp": "image/webp",
        "bmp": "image/bmp",
        "tif": "image/tiff",
        "tiff": "image/tiff",
        "ico": "image/vnd.microsoft.icon",
        "avif": "image/avif",
        "eps": "application/postscript",
        "ps": "application/postscript",
        // Documents
        "pdf": "application/pdf",
        "txt": "text/plain",
        "log": "text/plain",
        "md": "text/markdown",
        "markdown": "text/markdown",
        "html": "text/html",
        "htm": "text/html",
        "css": "text/css",
        "rtf": "application/rtf",
        "tex": "application/x-tex",
        "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "doc": "application/msword",
        "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "ppt": "application/vnd.ms-powerpoint",
        "odt": "application/vnd.oasis.opendocument.text",
        "ods": "application/vnd.oasis.opendocument.spreadsheet",
        "epub": "application/epub+zip",
        // Data
        "csv": "text/csv",
        "tsv": "text/tab-separated-values",
        "json": "application/json",
        "jsonl": "application/jsonl",
        "ndjson": "application/x-ndjson",
        "geojson": "application/geo+json",
        "xml": "application/xml",
        "yaml": "application/yaml",
        "yml": "application/yaml",
        "toml": "application/toml",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xls": "application/vnd.ms-excel",
        "parquet": "application/vnd.apache.parquet",
        "feather": "application/vnd.apache.arrow.file",
        "arrow": "application/vnd.apache.arrow.file",
        "npy": "application/x-npy",
        "npz": "application/x-npz",
        "pkl": "application/x-python-pickle",
        "pickle": "application/x-python-pickle",
        "h5": "application/x-hdf5",
        "hdf5": "application/x-hdf5",
        "sqlite": "application/vnd.sqlite3",
        "db": "application/vnd.sqlite3",
        "sql": "application/sql",
        "ipynb": "application/x-ipynb+json",
        // Code
        "py": "text/x-python",
        "js": "text/javascript",
        "ts": "text/x-typescript",
        "sh": "application/x-sh",
        "r": "text/x-r",
        "c": "text/x-c",
        "h": "text/x-c",
        "cpp": "text/x-c++",
        "java": "text/x-java",
        "swift": "text/x-swift",
        // Archives
        "zip": "application/zip",
        "gz": "application/gzip",
        "tgz": "application/gzip",
        "tar": "application/x-tar",
        "bz2": "application/x-bzip2",
        "xz": "application/x-xz",
        "7z": "application/x-7z-compressed",
        // Media
        "mp3": "audio/mpeg",
        "wav": "audio/wav",
        "ogg": "audio/ogg",
        "mp4": "video/mp4",
        "webm": "video/webm",
    ]
}

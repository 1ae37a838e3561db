import Crypto
import Foundation
import GRDB
import InterpreterCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// UUID-keyed blobs in `<directory>/files/` with their metadata in `<directory>/codeinterp.sqlite`.
///
/// Invariants the rest of the code relies on:
/// - A row exists only while its blob does: blobs are renamed into place before the row is inserted, and rows
///   are deleted before their blobs. A crash in between leaves an orphan blob, never a dangling row.
/// - Blobs are written under `files/.tmp-<uuid>` and renamed, so a reader never sees a partial blob.
/// - `sweepExpired` removes orphans (blobs without a row, and temp files) only once they are older than
///   `orphanGracePeriod`, because a fresh one may belong to a `store` in progress, here or in another process
///   sharing the directory (CLI and server).
/// - Every open store holds a shared lock on `files/.lock`. A store that can take it exclusively when it opens is
///   the directory's only user: its orphans are a crash's leftovers, removed at once, whatever their age.
public final class FileStore: Sendable {
    /// The data directory, made absolute.
    public let directory: String
    /// `<directory>/files`, where the blobs live.
    public let filesDirectory: String
    /// The metadata database. Other components add their own tables through `extraMigrations`.
    /// Used through GRDB's synchronous API, and that is deliberate: the writes that can take long (a blob's
    /// fsyncs, then its row) run on the blocking-I/O threads (`blockingIO` in Sandbox, for results, uploads and
    /// session files); reads are WAL snapshots of a pool and never wait for a writer; what else writes on a
    /// request's thread is a row or two whose commit (WAL, synchronous=NORMAL) waits for no fsync, only for
    /// another process of the same data directory that holds the write lock.
    public let database: DatabasePool
    /// `files/.lock`, held shared for the store's life (see the invariants above).
    private let lockDescriptor: Int32

    public static let databaseFileName = "codeinterp.sqlite"
    /// How long files are kept when the caller does not say: 24 h, as OpenAI's container files.
    public static let defaultRetention: Duration = .seconds(86_400)
    /// Orphans younger than this are left alone by the sweep (see the type's documentation). A temp file that
    /// is still being written keeps a fresh mtime, so only a store stalled this long can lose its temp file
    /// (and it then fails cleanly at rename).
    public static let orphanGracePeriod: TimeInterval = 3_600
    static let tempPrefix = ".tmp-"
    static let chunkSize = 1 << 16

    /// Opens (creating if needed) the store in `directory`: the directory itself (mode 0700 when created),
    /// `files/`, and the database in WAL mode, then runs the migrations: this module's first ("v1-files"),
    /// then whatever `extraMigrations` registers. GRDB applies each migration once, in registration order, so
    /// extra migrations must keep their names and order from one release to the next.
    public init(directory: String, extraMigrations: (inout DatabaseMigrator) -> Void = { _ in }) throws {
        let directory = Self.absolutePath(directory)
        self.directory = directory
        filesDirectory = directory + "/files"
        try Self.makeDirectories(directory)
        try Self.makeDirectories(filesDirectory)

        var configuration = Configuration()
        // The CLI and a running server may share one data directory; without a busy timeout the second
        // writer fails at once with SQLITE_BUSY instead of waiting its turn.
        configuration.busyMode = .timeout(10)
        // WAL with synchronous=NORMAL: a commit waits for no fsync (one per execution that touches its session
        // or stores a file: milliseconds on a virtual disk). The database stays consistent across a crash; a power
        // loss may take the last commits back. That breaks no promise of the store: a blob is fsynced, under its
        // final name, before its row is inserted, so a row that survives always has its blob, and a blob whose row
        // was taken back is an orphan that the start-up sweep removes.
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        database = try DatabasePool(path: directory + "/" + Self.databaseFileName, configuration: configuration)

        var migrator = DatabaseMigrator()
        Self.registerMigrations(&migrator)
        extraMigrations(&migrator)
        try migrator.migrate(database)

        lockDescriptor = open(filesDirectory + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if lockDescriptor >= 0 {
            if flock(lockDescriptor, LOCK_EX | LOCK_NB) == 0 {
                try removeOrphans(modifiedBefore: .distantFuture)
            }
            while flock(lockDescriptor, LOCK_SH) != 0 && errno == EINTR {}
        }
    }

    deinit {
        if lockDescriptor >= 0 { close(lockDescriptor) }
    }

    static func registerMigrations(_ migrator: inout DatabaseMigrator) {
        // Never edit a migration that has shipped: add a new one.
        migrator.registerMigration("v1-files") { db in
            try db.execute(sql: """
                CREATE TABLE file (
                    id TEXT NOT NULL PRIMARY KEY,
                    name TEXT NOT NULL,
                    path TEXT NOT NULL,
                    mime_type TEXT NOT NULL,
                    size_bytes INTEGER NOT NULL,
                    sha256 TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    expires_at INTEGER,
                    session_id TEXT,
                    source TEXT NOT NULL,
                    kind TEXT NOT NULL
                );
                CREATE INDEX file_session_id ON file(session_id, created_at);
                CREATE INDEX file_expires_at ON file(expires_at) WHERE expires_at IS NOT NULL;
                """)
        }
        registerSessionMigrations(&migrator)
    }

    // MARK: Storing

    /// Stores everything readable from `fd` (from its current offset to EOF) as a new file. The caller keeps
    /// ownership of `fd`. `retention` nil keeps the file until deleted. When the content exceeds `maxBytes`,
    /// or anything else fails, nothing is kept: no blob, no temp file, no row.
    public func store(fd: Int32, name: String, path: String, source: String, kind: String = "file",
                      sessionId: String? = nil, retention: Duration? = FileStore.defaultRetention,
                      maxBytes: Int64? = nil) throws -> StoredFile {
        try store(name: name, path: path, source: source, kind: kind, sessionId: sessionId, retention: retention,
                  maxBytes: maxBytes) { emit in
            var buffer = [UInt8](repeating: 0, count: Self.chunkSize)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count < 0 {
                    let code = errno
                    if code == EINTR { continue }
                    // A non-blocking pipe or socket: wait for data rather than fail half-way through.
                    if code == EAGAIN || code == EWOULDBLOCK {
                        var waiter = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                        if poll(&waiter, 1, -1) < 0, errno != EINTR {
                            throw FileStoreError.io("cannot wait for the content of \(name) on descriptor \(fd)",
                                                    errno: errno)
                        }
                        continue
                    }
                    throw FileStoreError.io("cannot read the content of \(name) from descriptor \(fd)", errno: code)
                }
                if count == 0 { return }
                try buffer.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            }
        }
    }

    /// Stores `bytes` as a new file; see `store(fd:...)`.
    public func store(bytes: [UInt8], name: String, path: String, source: String, kind: String = "file",
                      sessionId: String? = nil, retention: Duration? = FileStore.defaultRetention) throws -> StoredFile {
        try store(name: name, path: path, source: source, kind: kind, sessionId: sessionId, retention: retention,
                  maxBytes: nil) { emit in
            try bytes.withUnsafeBytes { try emit($0) }
        }
    }

    private func store(name: String, path: String, source: String, kind: String, sessionId: String?,
                       retention: Duration?, maxBytes: Int64?,
                       produce: (_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> StoredFile {
        guard StoredFile.sources.contains(source) else {
            throw FileStoreError.invalid("source must be \"user\" or \"assistant\", not \"\(source)\"")
        }
        guard StoredFile.kinds.contains(kind) else {
            throw FileStoreError.invalid("kind must be \"file\" or \"display\", not \"\(kind)\"")
        }
        if let maxBytes, maxBytes < 0 {
            throw FileStoreError.invalid("maxBytes must not be negative (got \(maxBytes))")
        }

        let id = UUID().uuidString.lowercased()
        let tempPath = filesDirectory + "/" + Self.tempPrefix + id
        let finalPath = filesDirectory + "/" + id
        let out = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard out >= 0 else { throw FileStoreError.io("cannot create \(tempPath)", errno: errno) }
        var openDescriptor: Int32? = out
        var leftover = tempPath
        do {
            var hasher = SHA256()
            var size: Int64 = 0
            try produce { chunk in
                size += Int64(chunk.count)
                if let maxBytes, size > maxBytes { throw FileStoreError.tooLarge(limit: maxBytes) }
                hasher.update(bufferPointer: chunk)
                try Self.writeAll(out, chunk, path: tempPath)
            }
            guard fsync(out) == 0 else { throw FileStoreError.io("cannot fsync \(tempPath)", errno: errno) }
            // Linux releases the descriptor even when close fails, so it must not be closed again.
            openDescriptor = nil
            guard close(out) == 0 else { throw FileStoreError.io("cannot close \(tempPath)", errno: errno) }
            guard rename(tempPath, finalPath) == 0 else {
                throw FileStoreError.io("cannot rename \(tempPath) to \(finalPath)", errno: errno)
            }
            leftover = finalPath
            try Self.syncDirectory(filesDirectory)

            let createdAt = StoredFile.normalized(Date())
            let record = StoredFile(
                id: id, name: name, path: path, mimeType: MimeTypes.forFileName(name), sizeBytes: size,
                sha256: hasher.finalize().lowercaseHex, createdAt: createdAt,
                expiresAt: retention.map { StoredFile.normalized(createdAt.addingTimeInterval($0 / .seconds(1))) },
                sessionId: sessionId, source: source, kind: kind)
            try database.write { db in try record.insert(db) }
            return record
        } catch {
            if let openDescriptor { close(openDescriptor) }
            unlink(leftover)
            throw error
        }
    }

    // MARK: Reading

    /// The file's metadata, or nil when the id is unknown, malformed, or the file has expired (an expired row
    /// can outlive its expiry until the next sweep; it must not be served in the meantime).
    public func file(id: String) throws -> StoredFile? {
        guard let id = Self.canonicalID(id) else { return nil }
        let now = StoredFile.milliseconds(Date())
        return try database.read { db in
            try StoredFile.filter(key: id).filter(Self.unexpired(at: now)).fetchOne(db)
        }
    }

    /// The unexpired files of one session, or of every session (and none) when `sessionId` is nil; oldest first.
    public func files(sessionId: String?) throws -> [StoredFile] {
        let now = StoredFile.milliseconds(Date())
        return try database.read { db in
            var request = StoredFile.filter(Self.unexpired(at: now))
            if let sessionId {
                request = request.filter(StoredFile.Columns.sessionId == sessionId)
            }
            return try request.order(StoredFile.Columns.createdAt, StoredFile.Columns.id).fetchAll(db)
        }
    }

    /// `files/<uuid>` for a valid id (any letter case), nil for anything else, so that a client-supplied id
    /// can never name a path outside `files/`. The blob may not exist (unknown id).
    public func blobPath(id: String) -> String? {
        Self.canonicalID(id).map { filesDirectory + "/" + $0 }
    }

    /// The blob of a file this store returned.
    public func blobPath(for file: StoredFile) -> String {
        blobPath(id: file.id) ?? filesDirectory + "/" + file.id
    }

    /// Bytes held by every row, expired or not: what the blobs occupy on disk until the next sweep.
    public func totalBytes() throws -> Int64 {
        try database.read { db in
            try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(size_bytes), 0) FROM file") ?? 0
        }
    }

    // MARK: Removing

    /// Deletes the row, then the blob. Returns false when there was no such file (or the id is malformed).
    public func delete(id: String) throws -> Bool {
        guard let id = Self.canonicalID(id) else { return false }
        let deleted = try database.write { db in try StoredFile.deleteOne(db, key: id) }
        // If unlink fails the blob is an orphan, which the sweep removes later.
        if deleted { unlink(filesDirectory + "/" + id) }
        return deleted
    }

    /// Removes the files expired at `now` (rows, then their blobs) and returns how many. Also removes blobs
    /// without a row and temp files left by a crash, once their mtime is older than `now - orphanGracePeriod`.
    @discardableResult
    public func sweepExpired(now: Date = Date()) throws -> Int {
        let nowMs = StoredFile.milliseconds(now)
        let expired = try database.write { db in
            let condition = "expires_at IS NOT NULL AND expires_at <= ?"
            let ids = try String.fetchAll(db, sql: "SELECT id FROM file WHERE \(condition)", arguments: [nowMs])
            try db.execute(sql: "DELETE FROM file WHERE \(condition)", arguments: [nowMs])
            return ids
        }
        for id in expired {
            unlink(filesDirectory + "/" + id)
        }
        try removeOrphans(modifiedBefore: now.addingTimeInterval(-Self.orphanGracePeriod))
        return expired.count
    }

    private func removeOrphans(modifiedBefore cutoff: Date) throws {
        // List before reading the ids: a blob renamed into place after the read but before its insert would
        // otherwise look orphaned. (Its fresh mtime protects it anyway; this keeps the window closed too.)
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: filesDirectory)
        } catch {
            throw FileStoreError(code: .io, message: "cannot list \(filesDirectory): \(error)")
        }
        let known = try database.read { db in Set(try String.fetchAll(db, sql: "SELECT id FROM file")) }
        for name in names {
            let isTemp = name.hasPrefix(Self.tempPrefix)
                && Self.canonicalID(String(name.dropFirst(Self.tempPrefix.count))) != nil
            let isOrphanBlob = Self.canonicalID(name) == name && !known.contains(name)
            // Anything else in files/ was not made by the store; leave it to whoever put it there.
            guard isTemp || isOrphanBlob else { continue }
            let path = filesDirectory + "/" + name
            guard let modified = Self.modificationTime(path), modified < cutoff else { continue }
            unlink(path)
        }
    }

    // MARK: Locations

    /// `$CODEINTERP_DATA_DIR` if set; else `/var/lib/codeinterp` for root; else `$XDG_DATA_HOME/codeinterp`
    /// (when absolute, as the XDG specification requires) or `~/.local/share/codeinterp`.
    public static func defaultDirectory(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> String {
        defaultDirectory(environment: environment, isRoot: geteuid() == 0)
    }

    static func defaultDirectory(environment: [String: String], isRoot: Bool) -> String {
        func nonEmpty(_ key: String) -> String? {
            guard let value = environment[key], !value.isEmpty else { return nil }
            return value
        }
        if let explicit = nonEmpty("CODEINTERP_DATA_DIR") { return explicit }
        if isRoot { return "/var/lib/codeinterp" }
        if let xdg = nonEmpty("XDG_DATA_HOME"), xdg.hasPrefix("/") {
            return trimmingTrailingSlashes(xdg) + "/codeinterp"
        }
        let home = nonEmpty("HOME") ?? FileManager.default.homeDirectoryForCurrentUser.path
        return trimmingTrailingSlashes(home) + "/.local/share/codeinterp"
    }

    // MARK: Helpers

    /// The lowercase form of a UUID string (8-4-4-4-12 hex digits), or nil.
    public static func canonicalID(_ id: String) -> String? {
        let utf8 = Array(id.utf8)
        guard utf8.count == 36 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(36)
        for (index, byte) in utf8.enumerated() {
            switch (index, byte) {
            case (8, UInt8(ascii: "-")), (13, UInt8(ascii: "-")), (18, UInt8(ascii: "-")), (23, UInt8(ascii: "-")):
                out.append(byte)
            case (8, _), (13, _), (18, _), (23, _):
                return nil
            case (_, UInt8(ascii: "0")...UInt8(ascii: "9")), (_, UInt8(ascii: "a")...UInt8(ascii: "f")):
                out.append(byte)
            case (_, UInt8(ascii: "A")...UInt8(ascii: "F")):
                out.append(byte + 32)
            default:
                return nil
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func unexpired(at nowMs: Int64) -> SQLExpression {
        StoredFile.Columns.expiresAt == nil || StoredFile.Columns.expiresAt > nowMs
    }

    private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, base + offset, bytes.count - offset)
            if written < 0 {
                let code = errno
                if code == EINTR { continue }
                throw FileStoreError.io("cannot write \(path)", errno: code)
            }
            offset += written
        }
    }

    /// Makes a rename durable: without it a power loss can forget the new directory entry.
    private static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileStoreError.io("cannot open directory \(path)", errno: errno) }
        defer { close(fd) }
        // Some file systems cannot fsync a directory (EINVAL); they give no stronger guarantee to ask for.
        if fsync(fd) != 0, errno != EINVAL {
            throw FileStoreError.io("cannot fsync directory \(path)", errno: errno)
        }
    }

    /// `mkdir -p`, with mode 0700 for the last component so that blobs and metadata stay private to the
    /// service's user. An existing directory keeps the mode the operator gave it.
    private static func makeDirectories(_ path: String) throws {
        let components = path.split(separator: "/")
        var prefix = ""
        for (index, component) in components.enumerated() {
            prefix += "/" + component
            let mode: mode_t = index == components.count - 1 ? 0o700 : 0o755
            if mkdir(prefix, mode) != 0, errno != EEXIST {
                throw FileStoreError.io("cannot create directory \(prefix)", errno: errno)
            }
        }
        var info = stat()
        guard stat(path, &info) == 0 else { throw FileStoreError.io("cannot stat \(path)", errno: errno) }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw FileStoreError.io("\(path) is not a directory", errno: ENOTDIR)
        }
    }

    private static func modificationTime(_ path: String) -> Date? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        #if canImport(Darwin)
        let time = info.st_mtimespec
        #else
        let time = info.st_mtim
        #endif
        return Date(timeIntervalSince1970: TimeInterval(time.tv_sec) + TimeInterval(time.tv_nsec) / 1e9)
    }

    private static func absolutePath(_ path: String) -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        return trimmingTrailingSlashes(absolute)
    }

    private static func trimmingTrailingSlashes(_ path: String) -> String {
        var path = Substring(path)
        while path.count > 1, path.hasSuffix("/") { path = path.dropLast() }
        return String(path)
    }
}

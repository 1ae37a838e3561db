import FileStore
import Foundation
import InterpreterCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a new session is made of.
public struct SessionOptions: Sendable {
    public var name: String?
    /// Idle time after which the session expires; nil takes the engine's default.
    public var idleTimeoutSeconds: Int?
    public var profile: String
    /// Stored files copied into the session's /mnt data at creation.
    public var fileIds: [String]
    /// Memory for the session's code instead of the profile's: more (up to the profile's `max_memory_bytes`)
    /// or less.
    public var memoryBytes: Int64?

    public init(name: String? = nil, idleTimeoutSeconds: Int? = nil, profile: String = "default", fileIds: [String] = [],
                memoryBytes: Int64? = nil) {
        self.name = name
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.profile = profile
        self.fileIds = fileIds
        self.memoryBytes = memoryBytes
    }
}

/// What a sweep removed.
public struct SweepReport: Sendable, Equatable {
    public var expiredFiles = 0
    public var expiredSessions = 0
    public var staleWorkDirectories = 0
}

/// In-memory state of the sessions this engine has run: a lock per session (its executions run one at a time)
/// and what each session's /mnt/data looked like after its last collection.
final class SessionBook: Sendable {
    private struct State {
        var locks: [String: AsyncLock] = [:]
        var directoryLocks: [String: NSLock] = [:]
        var stamps: [String: [String: FileStamp]] = [:]
    }
    private let state = Mutex(State())

    func lock(_ session: String) -> AsyncLock {
        state.withLock { s in
            if let lock = s.locks[session] { return lock }
            let lock = AsyncLock()
            s.locks[session] = lock
            return lock
        }
    }

    /// Runs `body` while nothing else adds to, removes from or replaces the session's /mnt/data directory (an
    /// upload against a spare interpreter taking the directory's place).
    func withDirectory<T>(_ session: String, _ body: () throws -> T) rethrows -> T {
        let lock = state.withLock { s in
            if let lock = s.directoryLocks[session] { return lock }
            let lock = NSLock()
            s.directoryLocks[session] = lock
            return lock
        }
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    func stamps(_ session: String) -> [String: FileStamp]? { state.withLock { $0.stamps[session] } }

    func setStamps(_ session: String, _ stamps: [String: FileStamp]) { state.withLock { $0.stamps[session] = stamps } }

    func setStamp(_ session: String, path: String, _ stamp: FileStamp?) {
        state.withLock { s in
            guard s.stamps[session] != nil else { return }
            s.stamps[session]![path] = stamp
        }
    }

    func forget(_ session: String) {
        state.withLock { s in
            s.locks[session] = nil
            s.directoryLocks[session] = nil
            s.stamps[session] = nil
        }
    }
}

/// Names users give to uploaded files, made safe to create in /mnt/data.
public enum FileNames {
    /// The last path component of `name` (either slash), trimmed. Throws for names that cannot be a file
    /// name: empty, only dots, control characters, longer than 255 bytes.
    public static func sanitize(_ name: String) throws(EngineError) -> String {
        let base = name.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? ""
        let trimmed = base.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, trimmed.contains(where: { $0 != "." }) else {
            throw EngineError(.badRequest, "unusable file name \"\(name)\": it must name a file, not a directory")
        }
        guard !trimmed.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw EngineError(.badRequest, "unusable file name \"\(name)\": it contains control characters")
        }
        guard trimmed.utf8.count <= 255 else {
            throw EngineError(.badRequest, "unusable file name: longer than 255 bytes")
        }
        return trimmed
    }
}

extension ExecutionEngine {
    // MARK: Sessions

    public func createSession(_ options: SessionOptions) throws -> SessionRecord {
        let (profile, _) = try profile(options.profile)
        let idle = options.idleTimeoutSeconds ?? configuration.sessionIdleSeconds
        guard idle > 0 else { throw EngineError(.badRequest, "idle_timeout_s must be positive") }
        if let memory = options.memoryBytes {
            guard memory > 0 else { throw EngineError(.badRequest, "memory limit must be positive") }
            let ceiling = profile.limits.sessionMemoryCeiling
            guard memory <= ceiling else {
                throw EngineError(.badRequest, "a memory limit of \(Limits.describeBytes(memory)) is above the maximum of "
                    + "\(Limits.describeBytes(ceiling)) that profile \"\(profile.name)\" allows a session")
            }
        }
        let inputs = try options.fileIds.map { id throws(EngineError) -> StoredFile in
            guard let file = try? store.file(id: id) else { throw EngineError(.notFound, "no file with id \(id)") }
            return file
        }
        let record: SessionRecord
        let memory = options.memoryBytes == profile.limits.memoryBytes ? nil : options.memoryBytes
        do {
            record = try store.createSession(name: options.name, profile: options.profile, idleTimeoutSeconds: idle, memoryBytes: memory)
        } catch {
            throw EngineError(.workerFailed, "cannot create the session: \(error)")
        }
        let dir = sessionDirectory(record.id)
        guard mkdir(dir, 0o700) == 0 else {
            _ = try? store.deleteSession(id: record.id)
            throw EngineError(.workerFailed, "cannot create \(dir): \(String(cString: strerror(errno)))")
        }
        sessionBook.setStamps(record.id, [:])
        do {
            for file in inputs { _ = try addSessionFile(sessionId: record.id, fileId: file.id) }
        } catch {
            _ = try? deleteSession(id: record.id)
            throw error
        }
        return record
    }

    /// The session, or nil when unknown, malformed or expired.
    public func session(id: String) throws -> SessionRecord? {
        try store.session(id: id)
    }

    /// Live sessions, oldest first.
    public func sessions() throws -> [SessionRecord] {
        try store.sessions()
    }

    /// Stops the session's interpreter and removes its /mnt/data and every file of it.
    @discardableResult
    public func deleteSession(id: String) throws -> Bool {
        guard let id = FileStore.canonicalID(id) else { return false }
        // The kill first: a spawn into the freed slot then reaches the zygote after it (the zygote refuses a slot
        // whose child it has not been told to kill).
        stopInterpreter(session: id)
        sessionSlots.remove(session: id)
        sessionBook.withDirectory(id) { removeTree(sessionDirectory(id)) }
        sessionBook.forget(id)
        sessionPool.refillAll()
        return try store.deleteSession(id: id)
    }

    /// Interpreters of sessions running now (idle or busy).
    public var liveInterpreters: Int { sessionSlots.liveCount }

    /// The files in the session's /mnt/data, as of its last execution or upload; oldest first.
    public func sessionFiles(sessionId: String) throws -> [StoredFile] {
        let session = try requireSession(sessionId)
        return try store.currentFiles(sessionId: session.id)
    }

    /// Uploads `fd`'s content (to EOF) as /mnt/data/NAME of the session; replaces a file of that name.
    public func addSessionFile(sessionId: String, name: String, fd: Int32, maxBytes: Int64?) throws -> StoredFile {
        let session = try requireSession(sessionId)
        let clean = try FileNames.sanitize(name)
        let file: StoredFile
        do {
            file = try store.store(fd: fd, name: clean, path: "/mnt/data/" + clean, source: "user",
                                   sessionId: session.id, retention: configuration.fileRetention, maxBytes: maxBytes)
        } catch let error as FileStoreError where error.code == .tooLarge {
            throw EngineError(.tooLarge, "\(clean) is larger than \(maxBytes ?? 0) bytes")
        }
        return try place(file, in: session)
    }

    public func addSessionFile(sessionId: String, name: String, bytes: [UInt8]) throws -> StoredFile {
        let session = try requireSession(sessionId)
        let clean = try FileNames.sanitize(name)
        let file = try store.store(bytes: bytes, name: clean, path: "/mnt/data/" + clean, source: "user", sessionId: session.id,
                                    retention: configuration.fileRetention)
        return try place(file, in: session)
    }

    /// Copies a stored file (an earlier upload, another session's output) into the session.
    public func addSessionFile(sessionId: String, fileId: String) throws -> StoredFile {
        let session = try requireSession(sessionId)
        guard let source = try store.file(id: fileId) else { throw EngineError(.notFound, "no file with id \(fileId)") }
        let fd = open(store.blobPath(for: source), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw EngineError(.notFound, "the content of file \(fileId) is gone") }
        defer { close(fd) }
        let clean = try FileNames.sanitize(source.name)
        let file = try store.store(fd: fd, name: clean, path: "/mnt/data/" + clean, source: "user", sessionId: session.id,
                                    retention: configuration.fileRetention)
        return try place(file, in: session)
    }

    /// Removes a file from the session (and from /mnt/data when it is the current version of its path).
    @discardableResult
    public func deleteSessionFile(sessionId: String, fileId: String) throws -> Bool {
        let session = try requireSession(sessionId)
        guard let file = try store.file(id: fileId), file.sessionId == session.id else { return false }
        if try store.currentFiles(sessionId: session.id).contains(where: { $0.id == file.id }), file.path.hasPrefix("/mnt/data/") {
            let relative = String(file.path.dropFirst("/mnt/data/".count))
            sessionBook.withDirectory(session.id) {
                unlinkRelative(sessionDirectory(session.id), relative)
                // And from the live interpreter's own /mnt/data.
                // (Held: its descriptor is released under this lock, or once nothing holds the child.)
                if let child = state.withLock({ $0.interpreters[session.id]?.child }), let data = child.dataDirectory {
                    withExtendedLifetime(child) { unlinkRelative(directoryFd: data, relative) }
                }
            }
            sessionBook.setStamp(session.id, path: relative, nil)
        }
        return try store.delete(id: file.id)
    }

    /// Removes expired files, sessions idle past their timeout (interpreter, /mnt/data, files), and work
    /// directories that interrupted runs left behind.
    @discardableResult
    public func sweep(now: Date = Date()) throws -> SweepReport {
        var report = SweepReport()
        for session in try store.expiredSessions(now: now) where try deleteSession(id: session.id) {
            report.expiredSessions += 1
        }
        report.expiredFiles = try store.sweepExpired(now: now)
        let work = configuration.dataDirectory + "/work"
        let warm = liveWorkdirs
        for name in (try? FileManager.default.contentsOfDirectory(atPath: work)) ?? [] {
            let path = work + "/" + name
            if warm.contains(path) { continue }
            var st = stat()
            guard lstat(path, &st) == 0, now.timeIntervalSince1970 - Double(st.st_mtim.tv_sec) > 3600 else { continue }
            removeTree(path)
            report.staleWorkDirectories += 1
        }
        return report
    }

    // MARK: Internals

    func sessionDirectory(_ id: String) -> String { configuration.dataDirectory + "/sessions/" + id }

    func requireSession(_ id: String) throws(EngineError) -> SessionRecord {
        let record: SessionRecord?
        do { record = try store.session(id: id) } catch { throw EngineError(.workerFailed, "cannot read sessions: \(error)") }
        guard let record else {
            throw EngineError(.notFound, "no session with id \(id) (it may have expired)", subject: .session(id))
        }
        return record
    }

    /// Copies a stored upload into the session's /mnt/data (atomically: temp name, then rename) and makes it the
    /// current version of its path.
    private func place(_ file: StoredFile, in session: SessionRecord) throws -> StoredFile {
        let relative = String(file.path.dropFirst("/mnt/data/".count))
        do {
            try sessionBook.withDirectory(session.id) {
                let owner = sessionSlots.slot(of: session.id).flatMap(uidForSlot)
                // A live interpreter's /mnt/data is its own tmpfs: the file goes there first (where the byte budget
                // may refuse it), then to the session's directory, which the next interpreter starts from.
                // (Held: its descriptor is released under this lock, or once nothing holds the child.)
                if let child = state.withLock({ $0.interpreters[session.id]?.child }), let data = child.dataDirectory {
                    do {
                        try withExtendedLifetime(child) {
                            try copyFile(from: store.blobPath(for: file), intoDirectoryFd: data, name: relative, owner: owner)
                        }
                    } catch {
                        guard ExecutionEngine.isFull(data) else { throw error }
                        let budget = (try? self.profile(session.profile))?.0
                        throw EngineError(.tooLarge, "\(relative) does not fit in the session's /mnt/data, whose budget is "
                            + Limits.describeBytes(budget?.limits.dataBytes ?? 0) + " (data_bytes of profile \"\(budget?.name ?? session.profile)\")")
                    }
                }
                try copyFile(from: store.blobPath(for: file), intoDirectory: sessionDirectory(session.id), name: relative, owner: owner)
                if let child = state.withLock({ $0.interpreters[session.id]?.child }), let data = child.dataDirectory {
                    // Both copies with one modification time: the next save finds the file unchanged, and the
                    // collector does not take the upload for an output.
                    var st = stat()
                    if withExtendedLifetime(child, { fstatat(data, relative, &st, AT_SYMLINK_NOFOLLOW) }) == 0 {
                        let times = [st.st_atim, st.st_mtim]
                        utimensat(AT_FDCWD, sessionDirectory(session.id) + "/" + relative, times, AT_SYMLINK_NOFOLLOW)
                    }
                }
            }
        } catch {
            _ = try? store.delete(id: file.id)
            throw error
        }
        try store.makeCurrent(file)
        _ = try? store.touchSession(id: session.id)
        sessionBook.setStamp(session.id, path: relative, FileStamp(path: sessionDirectory(session.id) + "/" + relative))
        return file
    }

    /// The uid a slot's code runs as, when this engine runs as root (and can hand files over to it).
    func uidForSlot(_ slot: Int) -> uid_t? {
        geteuid() == 0 ? configuration.uidBase + UInt32(slot) : nil
    }
}

/// Copies `source` to `directory/name` through a temporary name, so code never sees half a file.
func copyFile(from source: String, intoDirectory directory: String, name: String, owner: uid_t?) throws(EngineError) {
    let dirFd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard dirFd >= 0 else { throw EngineError(.workerFailed, "cannot open \(directory): \(String(cString: strerror(errno)))") }
    defer { close(dirFd) }
    try copyFile(from: source, intoDirectoryFd: dirFd, name: name, owner: owner)
}

/// The same into the directory open as `dirFd` (a child's own /mnt data, reachable only by descriptor).
func copyFile(from source: String, intoDirectoryFd dirFd: Int32, name: String, owner: uid_t?) throws(EngineError) {
    let input = open(source, O_RDONLY | O_CLOEXEC)
    guard input >= 0 else { throw EngineError(.notFound, "cannot read \(source): \(String(cString: strerror(errno)))") }
    defer { close(input) }
    let temp = ".upload-" + UUID().uuidString.lowercased()
    let output = openat(dirFd, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
    guard output >= 0 else { throw EngineError(.workerFailed, "cannot create \(name): \(String(cString: strerror(errno)))") }
    var failed = copyContents(of: input, to: output)
    if let owner, failed == 0 { _ = fchown(output, owner, owner) }
    close(output)
    // A directory (or anything else) the code left under that name is not replaced.
    if failed == 0, renameat(dirFd, temp, dirFd, name) != 0 { failed = errno }
    if failed != 0 {
        unlinkat(dirFd, temp, 0)
        throw EngineError(.workerFailed, "cannot write \(name) into /mnt/data: \(String(cString: strerror(failed)))")
    }
}

/// Copies what `input` has from its offset to EOF into `output`, retrying interrupted calls; 0, or the errno
/// of the read or write that failed.
func copyContents(of input: Int32, to output: Int32) -> Int32 {
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = read(input, &buffer, buffer.count)
        if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
        if n < 0 { return errno }
        if n == 0 { return 0 }
        var offset = 0
        while offset < n {
            let w = buffer.withUnsafeBytes { write(output, $0.baseAddress! + offset, n - offset) }
            if w < 0 && errno == EINTR { continue }
            if w < 0 { return errno }
            offset += w
        }
    }
}

/// Moves every entry of `source` into `target` (same file system); on failure moves back what it moved.
func moveEntries(from source: String, to target: String) -> Bool {
    let from = open(source, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard from >= 0 else { return errno == ENOENT }
    defer { close(from) }
    let to = open(target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard to >= 0 else { return false }
    defer { close(to) }
    var moved: [String] = []
    for name in directoryEntryNames(atPath: source) ?? [] {
        guard renameat(from, name, to, name) == 0 else {
            for back in moved { renameat(to, back, from, back) }
            return false
        }
        moved.append(name)
    }
    return true
}

/// Unlinks `directory/relative` without following symlinks on the way.
func unlinkRelative(_ directory: String, _ relative: String) {
    let fd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard fd >= 0 else { return }
    unlinkRelative(directoryFd: fd, relative)
    close(fd)
}

/// The same in the directory open as `directoryFd` (left open).
func unlinkRelative(directoryFd: Int32, _ relative: String) {
    var fd = fcntl(directoryFd, F_DUPFD_CLOEXEC, 0)
    let parts = relative.split(separator: "/").map(String.init)
    for part in parts.dropLast() where fd >= 0 {
        let next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        close(fd)
        fd = next
    }
    guard fd >= 0 else { return }
    defer { close(fd) }
    if let last = parts.last { unlinkat(fd, last, 0) }
}

/// Hands a session's /mnt/data to the uid its next interpreter runs as (without following symlinks).
func chownTree(_ path: String, to uid: uid_t) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = fchown(fd, uid, uid)
    chownContents(of: fd, to: uid)
}

private func chownContents(of dirFd: Int32, to uid: uid_t) {
    guard let dir = fdopendir(dirFd) else { close(dirFd); return }
    defer { closedir(dir) }
    for name in directoryEntryRawNames(dir) {
        _ = fchownat(dirFd, name, uid, uid, AT_SYMLINK_NOFOLLOW)
        let sub = openat(dirFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if sub >= 0 { chownContents(of: sub, to: uid) }
    }
}

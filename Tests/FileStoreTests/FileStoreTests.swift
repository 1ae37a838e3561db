import Crypto
import Foundation
import GRDB
import InterpreterCore
import Testing

@testable import FileStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fresh directory per test; the store's data directory is a not-yet-existing child, so `init` must create it.
final class Scratch {
    let root: String
    var dataDirectory: String { root + "/data" }
    var filesDirectory: String { dataDirectory + "/files" }

    init() throws {
        root = FileManager.default.temporaryDirectory.path + "/filestore-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    func open(extraMigrations: (inout DatabaseMigrator) -> Void = { _ in }) throws -> FileStore {
        try FileStore(directory: dataDirectory, extraMigrations: extraMigrations)
    }

    func blobDirectoryEntries() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: filesDirectory).filter { $0 != ".lock" }.sorted()
    }

    /// A real file on disk with `bytes`, opened with `flags`; the caller closes the descriptor.
    func openFile(_ bytes: [UInt8], flags: Int32 = O_RDONLY) throws -> Int32 {
        let path = root + "/input-" + UUID().uuidString
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let fd = Glibc.open(path, flags | O_CLOEXEC)
        #expect(fd >= 0)
        return fd
    }
}

func contents(_ path: String) -> [UInt8]? {
    FileManager.default.contents(atPath: path).map { [UInt8]($0) }
}

func setModificationTime(_ path: String, to date: Date) throws {
    try FileManager.default.setAttributes([.modificationDate: date], ofItemAtPath: path)
}

@Suite struct StoringTests {
    @Test func storedBytesLandInABlobWithTheirSHA256() throws {
        let scratch = try Scratch()
        let store = try scratch.open()
        let bytes = Array("abc".utf8)

        let file = try store.store(bytes: bytes, name: "t.csv", path: "/mnt/data/t.csv", source: "assistant")

        // The FIPS 180-2 test vector for "abc".
        #expect(file.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(file.sizeBytes == 3)
        #expect(file.mimeType == "text/csv")
        #expect(file.id == file.id.lowercased() && FileStore.canonicalID(file.id) == file.id)
        #expect(store.blobPath(for: file) == scratch.filesDirectory + "/" + file.id)
        #expect(contents(store.blobPath(for: file)) == bytes)
        #expect(try scratch.blobDirectoryEntries() == [file.id])
        #expect(try store.totalBytes() == 3)
    }

    @Test func aRowReadBackEqualsTheStoredRecord() throws {
        let scratch = try Scratch()
        let store = try scratch.open()

        let before = Date()
        let stored = try store.store(bytes: [1, 2, 3, 4], name: "figure-1.png", path: "", source: "assistant",
                                     kind: "display", sessionId: "sess-1", retention: .seconds(3600))
        let other = try store.store(bytes: [5], name: "upload.xlsx", path: "/mnt/data/upload.xlsx", source: "user",
                                    sessionId: "sess-2", retention: nil)

        #expect(try store.file(id: stored.id) == stored)
        #expect(try store.file(id: stored.id.uppercased()) == stored)
        #expect(stored.kind == "display" && stored.source == "assistant" && stored.mimeType == "image/png")
        let lifetime = try #require(stored.expiresAt).timeIntervalSince(stored.createdAt)
        #expect(abs(lifetime - 3600) < 0.002)
        // Stamped when it was stored (to the millisecond the row keeps): not before the call, not after a later file.
        #expect(stored.createdAt.timeIntervalSince1970 >= (before.timeIntervalSince1970 * 1000).rounded(.down) / 1000)
        #expect(stored.createdAt <= other.createdAt)
        #expect(try store.file(id: other.id)?.expiresAt == nil)
        #expect(try store.files(sessionId: "sess-1") == [stored])
        #expect(try store.files(sessionId: "sess-2") == [other])
        #expect(try store.files(sessionId: "nobody").isEmpty)
        #expect(try Set(store.files(sessionId: nil)) == [stored, other])
    }

    @Test func storeFromADescriptorCopiesARealFileToEOF() throws {
        let scratch = try Scratch()
        let store = try scratch.open()
        // Several read chunks, and not a multiple of the chunk size.
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<300_001).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let fd = try scratch.openFile(bytes)
        defer { close(fd) }

        let file = try store.store(fd: fd, name: "data.parquet", path: "/mnt/data/data.parquet", source: "assistant")

        #expect(file.sizeBytes == 300_001)
        #expect(file.sha256 == SHA256.hash(data: bytes).lowercaseHex)
        #expect(file.mimeType == "application/vnd.apache.parquet")
        #expect(contents(store.blobPath(for: file)) == bytes)
        #expect(fcntl(fd, F_GETFD) != -1, "the caller owns the descriptor; store must not close it")
        #expect(try store.file(id: file.id) == file)
    }

    @Test func storeFromANonBlockingPipeWaitsForTheWriter() throws {
        let scratch = try Scratch()
        let store = try scratch.open()
        var ends: [Int32] = [-1, -1]
        #expect(pipe(&ends) == 0)
        let (readEnd, writeEnd) = (ends[0], ends[1])
        defer { close(readEnd) }
        #expect(fcntl(readEnd, F_SETFL, fcntl(readEnd, F_GETFL) | O_NONBLOCK) == 0)
        // More than a pipe buffer, written late: the first reads find the pipe empty.
        let bytes = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        Thread.detachNewThread {
            usleep(50_000)
            bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let written = write(writeEnd, raw.baseAddress! + offset, raw.count - offset)
                    if written <= 0 { break }
                    offset += written
                }
            }
            close(writeEnd)
        }

        let file = try store.store(fd: readEnd, name: "stream.bin", path: "", source: "user")

        #expect(file.sizeBytes == 200_000)
        #expect(contents(store.blobPath(for: file)) == bytes)
    }

    @Test func exceedingMaxBytesKeepsNothing() throws {
        let scratch = try Scratch()
        let store = try scratch.open()
        let bytes = [UInt8](repeating: 7, count: 10)
        let fd = try scratch.openFile(bytes)
        defer { close(fd) }

        let error = #expect(throws: FileStoreError.self) {
            try store.store(fd: fd, name: "big.bin", path: "/mnt/data/big.bin", source: "assistant", maxBytes: 9)
        }
        #expect(error?.code == .tooLarge)
        #expect(error?.description.contains("9 bytes") == true)
        #expect(try scratch.blobDirectoryEntries().isEmpty)
        #expect(try store.files(sessionId: nil).isEmpty)
        #expect(try store.totalBytes() == 0)

        // Exactly at the limit is allowed.
        #expect(lseek(fd, 0, SEEK_SET) == 0)
        let file = try store.store(fd: fd, name: "big.bin", path: "/mnt/data/big.bin", source: "assistant",
                                   maxBytes: 10)
        #expect(file.sizeBytes == 10)
    }

    @Test func aReadErrorKeepsNothing() throws {
        let scratch = try Scratch()
        let store = try scratch.open()
        let fd = try scratch.openFile([1, 2, 3], flags: O_WRONLY)
        defer { close(fd) }

        let error = #expect(throws: FileStoreError.self) {
            try store.store(fd: fd, name: "x.txt", path: "", source: "user")
        }
        #expect(error?.code == .io)
        #expect(error?.errno == EBADF)
        #expect(try scratch.blobDirectoryEntries().isEmpty)
        #expect(try store.files(sessionId: nil).isEmpty)
    }

    @Test func aFailedInsertRemovesTheRenamedBlob() throws {
        let scratch = try Scratch()
        let store = try scratch.open { migrator in
            migrator.registerMigration("test-reject") { db in
                try db.execute(sql: """
                    CREATE TRIGGER reject_name BEFORE INSERT ON file WHEN NEW.name = 'reject.txt'
                    BEGIN SELECT RAISE(ABORT, 'rejected by test'); END
                    """)
            }
        }

        #expect(throws: DatabaseError.self) {
            try store.store(bytes: [1, 2, 3], name: "reject.txt", path: "", source: "user")
        }
        #expect(try scratch.blobDirectoryEntries().isEmpty)
        #expect(try store.files(sessionId: nil).isEmpty)
    }

    @Test func unknownSourceOrKindIsRejectedAndKeepsNothing() throws {
        let scratch = try Scratch()
        let store = try scratch.open()

        let badSource = #expect(throws: FileStoreError.self) {
            try store.store(bytes: [1], name: "a.txt", path: "", source: "system")
        }
        #expect(badSource?.code == .invalidArgument)
        let badKind = #expect(throws: FileStoreError.self) {
            try store.store(bytes: [1], name: "a.txt", path: "", source: "user", kind: "image")
        }
        #expect(badKind?.code == .invalidArgument)
        #expect(try scratch.blobDirectoryEntries().isEmpty)
        #expect(try store.files(sessionId: nil).isEmpty)
    }

    @Test func concurrentStoresAllLand() async throws {
        let scratch = try Scratch()
        let store = try scratch.open()

        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<16 {
                group.addTask {
                    try store.store(bytes: [UInt8](repeating: UInt8(index), count: 100 + index),
                                    name: "f\(index).txt", path: "/mnt/data/f\(index).txt", source: "assistant").id
                }
            }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }

        #expect(ids.count == 16)
        #expect(try Set(scratch.blobDirectoryEntries()) == ids)
        #expect(try store.totalBytes() == Int64((0..<16).reduce(0) { $0 + 100 + $1 }))
    }

    @Test func deleteRemovesRowAndBlob() throws {
        let scratch = try Scratch()
        let store = try scratch.open()
        let gone = try store.store(bytes: [1], name: "a.txt", path: "", source: "user")
        let kept = try store.store(bytes: [2, 2], name: "b.txt", path: "", source: "user")

        #expect(try store.delete(id: gone.id.uppercased()))
        #expect(try store.file(id: gone.id) == nil)
        #expect(try scratch.blobDirectoryEntries() == [kept.id])
        #expect(try store.delete(id: gone.id) == false)
        #expect(try store.totalBytes() == 2)
    }
}

@Suite struct DirectoryTests {
    @Test func initCreatesAPrivateDirectoryAndAWALDatabase() throws {
        let scratch = try Scratch()
        let store = try scratch.open()

        #expect(store.directory == scratch.dataDirectory)
        let attributes = try FileManager.default.attributesOfItem(atPath: scratch.dataDirectory)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o700)
        #expect(FileManager.default.fileExists(atPath: scratch.dataDirectory + "/codeinterp.sqlite"))
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: scratch.filesDirectory, isDirectory: &isDirectory))
        #expect(isDirectory.boolValue)
        let mode = try store.database.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
        let applied = try store.database.read { db in try DatabaseMigrator().appliedIdentifiers(db) }
        #expect(applied.isEmpty == false)
        #expect(try store.database.read { db in try db.tableExists("file") })
    }

    @Test func relativeDirectoriesAreMadeAbsolute() throws {
        let scratch = try Scratch()
        // Relative to the working directory, which the test must not change: other tests share the process.
        let depth = FileManager.default.currentDirectoryPath.split(separator: "/").count
        let relative = String(repeating: "../", count: depth) + scratch.root.dropFirst() + "/rel/"

        let store = try FileStore(directory: relative)
        let file = try store.store(bytes: [1], name: "a.txt", path: "", source: "user")

        #expect(store.directory.hasPrefix("/") && store.directory.hasSuffix("/rel"))
        #expect(contents(scratch.root + "/rel/files/" + file.id) == [1])
    }

    @Test func reopeningTheStoreKeepsFilesRowsAndExtraTables() throws {
        let scratch = try Scratch()
        let extra: (inout DatabaseMigrator) -> Void = { migrator in
            migrator.registerMigration("v1-widgets") { db in
                try db.execute(sql: "CREATE TABLE widget (id TEXT PRIMARY KEY NOT NULL)")
            }
        }
        let first = try scratch.open(extraMigrations: extra)
        let file = try first.store(bytes: Array("hello".utf8), name: "hello.txt", path: "/mnt/data/hello.txt",
                                   source: "user", sessionId: "s", retention: nil)
        try first.database.write { db in try db.execute(sql: "INSERT INTO widget (id) VALUES ('s')") }

        // A restart: a new store on the same directory, running the same migrations again.
        let second = try scratch.open(extraMigrations: extra)

        #expect(try second.file(id: file.id) == file)
        #expect(contents(second.blobPath(for: file)) == Array("hello".utf8))
        #expect(try second.files(sessionId: "s") == [file])
        #expect(try second.database.read { db in try String.fetchAll(db, sql: "SELECT id FROM widget") } == ["s"])
        let applied = try second.database.read { db in try DatabaseMigrator().appliedIdentifiers(db) }
        #expect(Set(applied) == ["v1-files", "v2-sessions", "v3-session-memory", "v1-widgets"])
    }

    @Test func defaultDirectoryFollowsTheEnvironment() {
        #expect(FileStore.defaultDirectory(environment: ["CODEINTERP_DATA_DIR": "/srv/ci", "HOME": "/home/u"],
                                           isRoot: true) == "/srv/ci")
        #expect(FileStore.defaultDirectory(environment: ["HOME": "/root", "XDG_DATA_HOME": "/x"], isRoot: true)
                == "/var/lib/codeinterp")
        #expect(FileStore.defaultDirectory(environment: ["HOME": "/home/u", "XDG_DATA_HOME": "/xdg/"], isRoot: false)
                == "/xdg/codeinterp")
        #expect(FileStore.defaultDirectory(environment: ["HOME": "/home/u", "XDG_DATA_HOME": "rel"], isRoot: false)
                == "/home/u/.local/share/codeinterp")
        #expect(FileStore.defaultDirectory(environment: ["HOME": "/home/u", "CODEINTERP_DATA_DIR": ""],
                                           isRoot: false) == "/home/u/.local/share/codeinterp")
        #expect(FileStore.defaultDirectory(environment: ["CODEINTERP_DATA_DIR": "/srv/ci"]) == "/srv/ci")
    }
}

@Suite struct ExpiryTests {
    @Test func sweepRemovesExpiredRowsWithTheirBlobsAndKeepsTheRest() throws {
        let scratch = try Scratch()
        let store = try scratch.open()
        let shortLived = try store.store(bytes: [1, 1], name: "a.txt", path: "", source: "user",
                                         retention: .seconds(60))
        let forever = try store.store(bytes: [2], name: "b.txt", path: "", source: "user", retention: nil)
        let daily = try store.store(bytes: [3], name: "c.txt", path: "", source: "user")

        #expect(try store.sweepExpired() == 0)
        #expect(try store.sweepExpired(now: Date().addingTimeInterval(120)) == 1)

        #expect(try store.file(id: shortLived.id) == nil)
        #expect(FileManager.default.fileExists(atPath: store.blobPath(for: shortLived)) == false)
        #expect(try store.file(id: forever.id) == forever)
        #expect(try store.file(id: daily.id) == daily)
        #expect(try Set(scratch.blobDirectoryEntries()) == [forever.id, daily.id])
        #expect(try store.totalBytes() == 2)

        // The default retention is a day.
        #expect(try store.sweepExpired(now: Date().addingTimeInterval(86_400 + 60)) == 1)
        #expect(try scratch.blobDirectoryEntries() == [forever.id])
    }

    @Test func anExpiredFileIsNotServedBeforeTheSweep() throws {
        let scratch = try Scratch()
        let store = try scratch.open()
        let file = try store.store(bytes: [1, 2, 3], name: "a.txt", path: "", source: "user", sessionId: "s",
                                   retention: .zero)

        #expect(try store.file(id: file.id) == nil)
        #expect(try store.files(sessionId: "s").isEmpty)
        #expect(try store.totalBytes() == 3, "its blob still occupies the disk")
        #expect(try store.sweepExpired() == 1)
        #expect(try store.totalBytes() == 0)
        #expect(try scratch.blobDirectoryEntries().isEmpty)
    }

    @Test func sweepRemovesOldCrashLeftoversOnly() throws {
        let scratch = try Scratch()
        let store = try scratch.open()
        let kept = try store.store(bytes: [9], name: "kept.txt", path: "", source: "user", retention: nil)
        let temp = ".tmp-" + UUID().uuidString.lowercased()
        let orphan = UUID().uuidString.lowercased()
        let foreign = "notes.txt"
        for name in [temp, orphan, foreign] {
            try Data([0, 1, 2]).write(to: URL(fileURLWithPath: scratch.filesDirectory + "/" + name))
        }

        // Fresh leftovers may be a store in progress (here or in another process): they stay.
        try store.sweepExpired()
        #expect(try Set(scratch.blobDirectoryEntries()) == [kept.id, temp, orphan, foreign])

        try store.sweepExpired(now: Date().addingTimeInterval(FileStore.orphanGracePeriod + 60))
        #expect(try Set(scratch.blobDirectoryEntries()) == [kept.id, foreign])
        #expect(contents(store.blobPath(for: kept)) == [9])
    }

    @Test func aStoreThatOpensAloneRemovesACrashsLeftoversAtOnce() throws {
        let scratch = try Scratch()
        let kept = try scratch.open().store(bytes: [9], name: "kept.txt", path: "", source: "user", retention: nil)
        let leftovers = [".tmp-" + UUID().uuidString.lowercased(), UUID().uuidString.lowercased()]
        do {
            // Another store has the directory open (the CLI beside a server): fresh leftovers may be its stores in
            // progress.
            let other = try scratch.open()
            for name in leftovers { try Data([1]).write(to: URL(fileURLWithPath: scratch.filesDirectory + "/" + name)) }
            _ = try scratch.open()
            #expect(try Set(scratch.blobDirectoryEntries()) == Set([kept.id] + leftovers))
            withExtendedLifetime(other) {}
        }
        // Alone (the process that wrote them died with them), they go as the store opens.
        let alone = try scratch.open()
        #expect(try Set(scratch.blobDirectoryEntries()) == [kept.id])
        #expect(contents(alone.blobPath(for: kept)) == [9])
    }

    @Test func oldLeftoversFromAPreviousRunAreRemovedByTheNextSweep() throws {
        let scratch = try Scratch()
        let store = try scratch.open()
        let temp = scratch.filesDirectory + "/.tmp-" + UUID().uuidString.lowercased()
        try Data([1]).write(to: URL(fileURLWithPath: temp))
        try setModificationTime(temp, to: Date().addingTimeInterval(-2 * FileStore.orphanGracePeriod))

        try store.sweepExpired()
        #expect(try scratch.blobDirectoryEntries().isEmpty)
    }
}

@Suite struct IdentifierTests {
    @Test(arguments: [
        "", "../x", "..", "not-a-uuid", "../../etc/passwd",
        "0f8fad5b-d9cb-469f-a165-70867728950e/..", "/0f8fad5b-d9cb-469f-a165-70867728950", "0f8fad5bxd9cb-469f-a165-70867728950e",
        "0f8fad5b-d9cb-469f-a165-70867728950g", " 0f8fad5b-d9cb-469f-a165-70867728950", "0f8fad5b-d9cb-469f-a165-70867728950e\0",
    ])
    func malformedIdsFindNothingAndNameNoPath(id: String) throws {
        let scratch = try Scratch()
        let store = try scratch.open()
        _ = try store.store(bytes: [1], name: "a.txt", path: "", source: "user")

        #expect(try store.file(id: id) == nil)
        #expect(store.blobPath(id: id) == nil)
        #expect(try store.delete(id: id) == false)
    }

    @Test func wellFormedIdsMapInsideFilesDirectory() throws {
        let scratch = try Scratch()
        let store = try scratch.open()
        let id = "0F8FAD5B-D9CB-469F-A165-70867728950E"

        #expect(store.blobPath(id: id) == scratch.filesDirectory + "/0f8fad5b-d9cb-469f-a165-70867728950e")
        #expect(try store.file(id: id) == nil)
    }
}

@Suite struct MimeTypeTests {
    @Test(arguments: [
        ("chart.png", "image/png"), ("photo.JPG", "image/jpeg"), ("photo.jpeg", "image/jpeg"),
        ("anim.gif", "image/gif"), ("plot.svg", "image/svg+xml"), ("x.webp", "image/webp"),
        ("report.pdf", "application/pdf"), ("data.csv", "text/csv"), ("data.tsv", "text/tab-separated-values"),
        ("d.json", "application/json"), ("notes.txt", "text/plain"), ("README.md", "text/markdown"),
        ("page.html", "text/html"),
        ("book.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("old.xls", "application/vnd.ms-excel"),
        ("memo.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("deck.pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
        ("bundle.zip", "application/zip"), ("script.py", "text/x-python"),
        ("t.parquet", "application/vnd.apache.parquet"), ("a.npy", "application/x-npy"),
        ("model.pkl", "application/x-python-pickle"), ("archive.tar.gz", "application/gzip"),
        ("/mnt/data/sub/chart.PNG", "image/png"),
        ("Makefile", "application/octet-stream"), (".env", "application/octet-stream"),
        ("trailing.", "application/octet-stream"), ("weird.xyz", "application/octet-stream"),
        ("dir.png/file", "application/octet-stream"), ("", "application/octet-stream"),
    ])
    func mimeTypeByExtension(name: String, expected: String) {
        #expect(MimeTypes.forFileName(name) == expected)
    }
}

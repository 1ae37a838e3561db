import Foundation
import Testing
@testable import Sandbox

/// What a killed engine (kill -9 of the server) leaves in DATA/work is removed when the next one starts, unless
/// another engine of the same data directory is still running; sessions' directories stay.
@Suite("Leftover work directories", .serialized)
struct LeftoverWorkTests {
    @Test func aStartingEngineRemovesWhatAKilledOneLeftAndKeepsSessions() throws {
        let config = EngineFixture.smallConfiguration("leftover-\(UInt32.random(in: 0...UInt32.max))", uidBase: 2_300_000, preload: [])
        let data = config.dataDirectory
        let fm = FileManager.default
        let stateless = data + "/work/" + UUID().uuidString.lowercased()
        let spare = data + "/work/spare-" + UUID().uuidString.lowercased()
        let adopting = data + "/work/spare-" + UUID().uuidString.lowercased()
        let session = data + "/sessions/" + UUID().uuidString.lowercased()
        for dir in [stateless + "/sub", spare, adopting, session] { try fm.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        try Data("out".utf8).write(to: URL(fileURLWithPath: stateless + "/sub/out.csv"))
        try Data("half".utf8).write(to: URL(fileURLWithPath: adopting + "/session-file.csv"))
        try Data("kept".utf8).write(to: URL(fileURLWithPath: session + "/data.csv"))
        try Data("spool".utf8).write(to: URL(fileURLWithPath: data + "/work/.upload-abc123"))

        let engine = try ExecutionEngine(configuration: config)
        #expect(!fm.fileExists(atPath: stateless), "a stateless child's directory outlived its engine")
        #expect(!fm.fileExists(atPath: spare), "a spare interpreter's directory outlived its engine")
        #expect(!fm.fileExists(atPath: data + "/work/.upload-abc123"))
        // A spare that holds files was being adopted by a session: its files are that session's.
        #expect(fm.fileExists(atPath: adopting + "/session-file.csv"))
        #expect(try String(contentsOfFile: session + "/data.csv", encoding: .utf8) == "kept")

        // While that engine runs, another one on the same data directory leaves its directories alone.
        let live = data + "/work/" + UUID().uuidString.lowercased()
        try fm.createDirectory(atPath: live, withIntermediateDirectories: true)
        let second = try ExecutionEngine(configuration: config)
        #expect(fm.fileExists(atPath: live), "an engine removed a running engine's work directory")
        withExtendedLifetime((engine, second)) {}
    }
}

import Foundation
import Server
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Server configuration")
struct ConfigurationTests {
    func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ci-config-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func defaultsWorkOnALaptop() throws {
        let (config, file) = try ServerConfiguration.resolve(configFile: nil, environment: [:], overrides: .init(),
                                                             defaultDataDirectory: try tempDir())
        #expect(file == nil)
        #expect(config.host == "127.0.0.1")
        #expect(config.port == 8080)
        #expect(config.maxCodeBytes == 256 << 10)
        #expect(config.maxUploadBytes == 100 << 20)
        #expect(config.rateLimitPerMinute == 600)
        #expect(config.signedURLTTLSeconds == 3_600)
        #expect(config.sessionIdleTimeoutSeconds == 1_200)
        #expect(config.baseURL(boundPort: 8080) == "http://127.0.0.1:8080")
    }

    @Test func flagsBeatEnvironmentBeatFileBeatDefaults() throws {
        let dir = try tempDir()
        let file = dir + "/server.json"
        try """
            {"host": "0.0.0.0", "port": 1111, "rate_limit_per_minute": 5, "max_code_bytes": 1000,
             "cors_origins": ["https://file.example"], "api_keys": ["file-key"]}
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let env = ["CODEINTERP_PORT": "2222", "CODEINTERP_RATE_LIMIT_PER_MINUTE": "7",
                   "CODEINTERP_API_KEYS": "env-a, env-b", "CODEINTERP_PUBLIC_URL": "https://env.example"]
        var flags = ServerConfiguration.Overrides()
        flags.port = 3333
        let (config, used) = try ServerConfiguration.resolve(configFile: file, environment: env, overrides: flags,
                                                             defaultDataDirectory: dir)
        #expect(used == file)
        #expect(config.port == 3333)                              // flag over env over file
        #expect(config.rateLimitPerMinute == 7)                   // env over file
        #expect(config.apiKeys == ["env-a", "env-b"])             // env, comma-separated
        #expect(config.host == "0.0.0.0")                         // file over default
        #expect(config.maxCodeBytes == 1000)
        #expect(config.corsOrigins == ["https://file.example"])
        #expect(config.maxUploadBytes == 100 << 20)               // default
        #expect(config.baseURL(boundPort: 3333) == "https://env.example")
    }

    @Test func theUpstreamModelIsConfiguredByFileEnvironmentOrFlags() throws {
        let dir = try tempDir()
        let file = dir + "/server.json"
        try #"{"upstream_base_url": "http://localhost:11434/v1", "upstream_api": "responses", "upstream_model": "qwen"}"#
            .write(toFile: file, atomically: true, encoding: .utf8)
        var flags = ServerConfiguration.Overrides()
        flags.upstreamModel = "llama"
        let (config, _) = try ServerConfiguration.resolve(
            configFile: file, environment: ["CODEINTERP_UPSTREAM_API_KEY_ENV": "MY_KEY"], overrides: flags,
            defaultDataDirectory: dir)
        #expect(config.upstreamBaseURL == "http://localhost:11434/v1")
        #expect(config.upstreamAPI == "responses")
        #expect(config.upstreamAPIKeyEnv == "MY_KEY")
        #expect(config.upstreamModel == "llama")
        #expect(try config.makeUpstream(environment: ["MY_KEY": "sk-1"]).label == "responses at http://localhost:11434/v1")
        // The variable it names must be set: the key is never in the configuration itself.
        #expect(throws: ConfigurationError.self) { try config.makeUpstream(environment: [:]) }
        // Nothing configured: the bundled demo model.
        let (plain, _) = try ServerConfiguration.resolve(configFile: nil, environment: [:], overrides: .init(),
                                                         defaultDataDirectory: dir)
        #expect(try plain.makeUpstream(environment: [:]).label == "scripted (3 turns)")
    }

    @Test func badUpstreamSettingsAreRefusedByName() throws {
        func problem(_ env: [String: String]) -> String? {
            do {
                _ = try ServerConfiguration.resolve(configFile: nil, environment: env, overrides: .init(),
                                                    defaultDataDirectory: "/nonexistent")
                return nil
            } catch {
                return "\(error)"
            }
        }
        #expect(problem(["CODEINTERP_UPSTREAM_API": "completions"])?.contains("upstream_api") == true)
        #expect(problem(["CODEINTERP_UPSTREAM_BASE_URL": "localhost:11434"])?.contains("upstream_base_url") == true)
        #expect(problem(["CODEINTERP_UPSTREAM_API_KEY_ENV": "sk-live-123"])?.contains("NAME of an environment variable") == true)
        #expect(problem(["CODEINTERP_UPSTREAM_BASE_URL": "http://x/v1", "CODEINTERP_UPSTREAM_SCRIPT": "s.json"]) != nil)
        #expect(problem(["CODEINTERP_UPSTREAM_BASE_URL": "http://x/v1", "CODEINTERP_UPSTREAM_API": "chat"]) == nil)
        let dir = try tempDir()
        try #"{"upstream_ap": "chat"}"#.write(toFile: dir + "/c.json", atomically: true, encoding: .utf8)
        #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.resolve(configFile: dir + "/c.json", environment: [:], overrides: .init(),
                                            defaultDataDirectory: dir)
        }
    }

    @Test func configJSONInTheDataDirectoryIsFoundWithoutAFlag() throws {
        let dir = try tempDir()
        try #"{"port": 4444}"#.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        let (config, used) = try ServerConfiguration.resolve(configFile: nil, environment: ["CODEINTERP_DATA_DIR": dir],
                                                             overrides: .init(), defaultDataDirectory: "/nonexistent")
        #expect(used == dir + "/config.json")
        #expect(config.port == 4444)
    }

    @Test func aTypoInTheConfigFileIsAnErrorNamingIt() throws {
        let dir = try tempDir()
        let file = dir + "/typo.json"
        try #"{"port": 9000, "rate_limit_per_minut": 5}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let error = try #require(throws: ConfigurationError.self) {
            try ServerConfiguration.resolve(configFile: file, environment: [:], overrides: .init(), defaultDataDirectory: dir)
        }
        #expect(error.description.contains("unknown key \"rate_limit_per_minut\""))
        #expect(error.description.contains("did you mean \"rate_limit_per_minute\""))
        #expect(error.description.contains(file))
    }

    @Test func wrongTypesAndBadValuesNameTheSetting() throws {
        let dir = try tempDir()
        let cases: [(String, String)] = [
            (#"{"port": "eighty"}"#, "\"port\": expected an integer"),
            (#"{"port": true}"#, "\"port\": expected an integer"),
            (#"{"port": 70000}"#, "port must be between"),
            (#"{"max_upload_bytes": 0}"#, "max_upload_bytes must be positive"),
            (#"{"public_url": "ftp://x"}"#, "public_url must be an absolute http(s) URL"),
            (#"{"log_level": "loud"}"#, "log_level must be one of"),
            (#"[1, 2]"#, "must be a JSON object"),
            (#"{"port": "#, "not valid JSON"),
        ]
        for (text, expected) in cases {
            let file = dir + "/c.json"
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            let error = try #require(throws: ConfigurationError.self, "\(text)") {
                try ServerConfiguration.resolve(configFile: file, environment: [:], overrides: .init(), defaultDataDirectory: dir)
            }
            #expect(error.description.contains(expected), "\(text) -> \(error.description)")
        }
        let envError = try #require(throws: ConfigurationError.self) {
            try ServerConfiguration.resolve(configFile: nil, environment: ["CODEINTERP_PORT": "80a"], overrides: .init(),
                                            defaultDataDirectory: dir)
        }
        #expect(envError.description.contains("CODEINTERP_PORT"))
    }
}

/// `codeinterp serve` as an operator runs it.
@Suite("codeinterp serve", .serialized)
struct ServeCommandTests {
    @Test func serveRejectsATypoInItsConfigFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ci-serve-typo-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try #"{"prot": 9000}"#.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        let r = try Subprocess.run([ServerFixture.executable("codeinterp"), "serve", "--data-dir", dir],
                                      environment: ServerFixture.environment)
        #expect(r.status != 0)
        #expect(r.stderr.contains("unknown key \"prot\""), "\(r.stderr)")
        #expect(r.stderr.contains("did you mean \"port\""))
    }

    @Test func serveGeneratesAKeyKeepsItAndStopsOnSIGTERM() async throws {
        ServerFixture.ensureLoopback()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ci-serve-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var env = ServerFixture.environment
        env["CODEINTERP_PRELOAD"] = "numpy"
        let argv = [ServerFixture.executable("codeinterp"), "serve", "--port", "0", "--data-dir", dir]

        func startAndReadBanner() async throws -> (Subprocess.Spawned, url: String, key: String) {
            let process = try Subprocess.spawn(argv, environment: env)
            // The banner comes once the zygote has preloaded, however long that takes on a busy machine: wait for
            // it or for the process to exit. (The bound only keeps a deadlock from hanging the whole run.)
            let deadlockGuard = ContinuousClock.now + .seconds(600)
            while ContinuousClock.now < deadlockGuard {
                let out = process.stdout()
                if let urlLine = out.split(separator: "\n").first(where: { $0.hasPrefix("codeinterp serving on ") }),
                   let keyLine = out.split(separator: "\n").first(where: { $0.contains("API key: ") }) {
                    let url = String(urlLine.dropFirst("codeinterp serving on ".count))
                    let key = String(keyLine.split(separator: " ").drop { $0 != "key:" }.dropFirst().first ?? "")
                    return (process, url, key)
                }
                var status: Int32 = 0
                if waitpid(process.pid, &status, WNOHANG) == process.pid {
                    Issue.record("serve exited with \(Subprocess.exitCode(status)): \(process.stderr())")
                    throw CancellationError()
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            kill(process.pid, SIGKILL)
            Issue.record("no banner from serve: \(process.stdout()) \(process.stderr())")
            throw CancellationError()
        }

        func stop(_ process: Subprocess.Spawned) -> Int32 {
            kill(process.pid, SIGTERM)
            var status: Int32 = 0
            while waitpid(process.pid, &status, 0) < 0 && errno == EINTR {}
            return Subprocess.exitCode(status)
        }

        let (first, url, key) = try await startAndReadBanner()
        #expect(url.hasPrefix("http://127.0.0.1:"))
        #expect(key.hasPrefix("ci-") && key.count > 20, "\(first.stdout())")
        #expect(first.stdout().contains("generated and saved"))
        var info = stat()
        #expect(stat(dir + "/api-key", &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)

        let client = try await TestServerClient(base: url)
        let unauthorized = try await client.get("/metrics", key: nil)
        #expect(unauthorized == 401)
        #expect(try await client.get("/metrics", key: key) == 200)

        // SIGTERM while an execution runs: it finishes and its caller gets the result, then the process exits 0.
        // Streamed, so the test knows the code is running from its own output (no polling that load can outrun).
        var request = HTTPClientRequest(url: url + "/v1/execute?stream=true")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(key)")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: #"{"code": "import time\nprint('started', flush=True)\ntime.sleep(1.5)\nprint('finished')"}"#))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(240))
        #expect(response.status.code == 200)
        var reader = SSEReader(iterator: response.body.makeAsyncIterator())
        var sawStart = false
        while !sawStart, let event = try await reader.next() {
            sawStart = event.name == "stdout" && event.data.contains("started")
        }
        #expect(sawStart)
        kill(first.pid, SIGTERM)
        var result: [String: Any]?
        while result == nil, let event = try await reader.next() {
            if event.name == "result" { result = try event.json() }
        }
        var status: Int32 = 0
        while waitpid(first.pid, &status, 0) < 0 && errno == EINTR {}
        let exit = Subprocess.exitCode(status)
        #expect(result?["status"] as? String == "ok", "\(String(describing: result))")
        #expect(result?["stdout"] as? String == "started\nfinished\n", "\(String(describing: result))")
        #expect(exit == 0, "\(first.stderr())")
        #expect(first.stderr().contains("stopping the sandbox engine"))

        // A restart keeps the key.
        let (second, _, keyAgain) = try await startAndReadBanner()
        #expect(keyAgain == key)
        #expect(second.stdout().contains("read from"))

        // `codeinterp run` for the same data directory goes through the running server's local socket (its
        // children are forked ahead, so the execution starts warm), unless told otherwise; once the server is
        // gone it runs in an engine of its own.
        let socket = dir + "/codeinterp.sock"
        #expect(stat(socket, &info) == 0 && info.st_mode & 0o777 == 0o600, "no local socket")
        func cli(_ extra: [String]) throws -> [String: Any] {
            let r = try Subprocess.run([ServerFixture.executable("codeinterp"), "run", "--data-dir", dir, "--json",
                                        "-c", "print('through'); 6 * 7"] + extra, environment: env)
            #expect(r.status == 0, "\(r.stderr)")
            let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] ?? [:]
            #expect(object["stdout"] as? String == "through\n")
            #expect((object["result"] as? [String: Any])?["text/plain"] as? String == "42")
            return object
        }
        func warm(_ result: [String: Any]) -> Bool? { (result["usage"] as? [String: Any])?["warm_start"] as? Bool }
        #expect(warm(try cli([])) == true, "not run by the server")
        #expect(warm(try cli(["--standalone"])) == false)
        #expect(stop(second) == 0, "\(second.stderr())")
        #expect(stat(socket, &info) != 0, "the socket outlived the server")
        #expect(warm(try cli([])) == false)
    }
}

import AsyncHTTPClient
import Hummingbird

struct TestServerClient {
    let base: String
    init(base: String) async throws { self.base = base }

    func body(_ path: String) async throws -> String {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: base + path), timeout: .seconds(30))
        return String(buffer: try await response.body.collect(upTo: 1 << 20))
    }

    func post(_ path: String, key: String, json: String) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: base + path)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(key)")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: json))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)))
    }

    func get(_ path: String, key: String?) async throws -> Int {
        var request = HTTPClientRequest(url: base + path)
        if let key { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        _ = try await response.body.collect(upTo: 1 << 20)
        return Int(response.status.code)
    }
}

import AsyncHTTPClient
import Crypto
import Foundation
import Hummingbird
import InterpreterCore
import Testing

@Suite("HTTP: execute, stream, files", .serialized)
struct ExecuteTests {
    static let chartCode = """
        import matplotlib.pyplot as plt
        print("drawing")
        plt.plot([1, 2, 3], [3, 1, 2])
        plt.savefig("chart.png")
        plt.close()
        6 * 7
        """

    @Test func statelessExecuteReturnsOutputResultAndADownloadableChart() async throws {
        let server = try await TestServer.start { $0.publicURL = nil }
        defer { Task { await server.stop() } }
        let reply = try await server.execute(Self.chartCode)
        #expect(reply.status == 200, "\(reply.text)")
        #expect(reply.header("Content-Type")?.hasPrefix("application/json") == true)
        let result = try reply.json()
        #expect(result["status"] as? String == "ok")
        #expect(result["stdout"] as? String == "drawing\n")
        #expect((result["result"] as? [String: Any])?["text/plain"] as? String == "42")
        #expect(result.keys.contains("session_id") && result.keys.contains("error") && result.keys.contains("usage"))
        let files = try #require(result["files"] as? [[String: Any]])
        let chart = try #require(files.first { $0["name"] as? String == "chart.png" }, "files: \(files)")
        #expect(chart["path"] as? String == "/mnt/data/chart.png")
        #expect(chart["store_path"] == nil, "host paths must not leak")
        let url = try #require(chart["url"] as? String)
        #expect(url.hasPrefix(server.base + "/v1/files/\(chart["id"] as! String)/content?"))

        // The signed URL works without any key, as a browser <img src> would fetch it.
        let download = try await server.request(.get, url, key: nil)
        #expect(download.status == 200)
        #expect(download.header("Content-Type") == "image/png")
        #expect(download.body.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        #expect(download.body.count == chart["size_bytes"] as? Int)
        let digest = SHA256.hash(data: download.body).lowercaseHex
        #expect(digest == chart["sha256"] as? String)

        // The same file without a signature needs a key.
        let unsigned = try await server.request(.get, "/v1/files/\(chart["id"] as! String)/content", key: nil)
        #expect(unsigned.status == 401)
        _ = try unsigned.envelope()
        let tampered = try await server.request(.get, url.replacingOccurrences(of: "sig=", with: "sig=0"), key: nil)
        #expect(tampered.status == 403)
        #expect(try tampered.envelope()["code"] as? String == "invalid_signature")
    }

    @Test func publicURLIsTheBaseOfFileURLs() async throws {
        let server = try await TestServer.start { $0.publicURL = "https://ci.example.com/base/" }
        defer { Task { await server.stop() } }
        let result = try await server.execute("open('x.txt', 'w').write('hi')").json()
        let url = try #require((result["files"] as? [[String: Any]])?.first?["url"] as? String)
        #expect(url.hasPrefix("https://ci.example.com/base/v1/files/"))
    }

    @Test func errorsComeBackAsResultsNotHTTPFailures() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let result = try await server.execute("x = {}\nx['missing']").json()
        #expect(result["status"] as? String == "error")
        let error = try #require(result["error"] as? [String: Any])
        #expect(error["name"] as? String == "KeyError")
        let timeout = try await server.execute("while True: pass", extra: ["timeout_s": 1]).json()
        #expect(timeout["status"] as? String == "timeout")
    }

    @Test func streamDeliversOutputBeforeTheResultAndTheSameResultObject() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let code = "import sys\nfor i in range(3):\n    print('line', i, flush=True)\nprint('oops', file=sys.stderr)\n'done'"
        var request = HTTPClientRequest(url: server.base + "/v1/execute")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(ServerFixture.apiKey)")
        request.headers.add(name: "Accept", value: "text/event-stream")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: ["code": code])))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        #expect(response.status.code == 200)
        #expect(response.headers.first(name: "Content-Type")?.hasPrefix("text/event-stream") == true)
        var reader = SSEReader(iterator: response.body.makeAsyncIterator())
        var events: [SSEReader.Event] = []
        while let event = try await reader.next() { events.append(event) }

        let names = events.map(\.name)
        #expect(names.last == "result", "\(names)")
        #expect(names.filter { $0 == "result" }.count == 1)
        let resultIndex = try #require(names.firstIndex(of: "result"))
        let stdoutText = try events.filter { $0.name == "stdout" }.map { try $0.json()["text"] as? String ?? "" }.joined()
        let stderrText = try events.filter { $0.name == "stderr" }.map { try $0.json()["text"] as? String ?? "" }.joined()
        #expect(names.firstIndex(of: "stdout").map { $0 < resultIndex } == true)
        #expect(stdoutText == "line 0\nline 1\nline 2\n")
        #expect(stderrText == "oops\n")

        let streamed = try events[resultIndex].json()
        let plain = try await server.execute(code).json()
        #expect(Set(streamed.keys) == Set(plain.keys))
        #expect(streamed["stdout"] as? String == stdoutText)
        #expect(streamed["stdout"] as? String == plain["stdout"] as? String)
        #expect(streamed["stderr"] as? String == plain["stderr"] as? String)
        #expect(streamed["status"] as? String == "ok")
        #expect((streamed["result"] as? [String: String]) == (plain["result"] as? [String: String]))
    }

    @Test func streamSendsFileEventsWithSignedURLs() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        var request = HTTPClientRequest(url: server.base + "/v1/execute?stream=true")
        request.method = .POST
        request.headers.add(name: "X-API-Key", value: ServerFixture.apiKey)
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: ["code": Self.chartCode])))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        var reader = SSEReader(iterator: response.body.makeAsyncIterator())
        var events: [SSEReader.Event] = []
        while let event = try await reader.next() { events.append(event) }
        let file = try #require(events.first { $0.name == "file" }).json()
        #expect(file["name"] as? String == "chart.png")
        let url = try #require(file["url"] as? String)
        let download = try await server.request(.get, url, key: nil)
        #expect(download.status == 200)
        #expect(download.body.starts(with: [0x89, 0x50, 0x4E, 0x47]))
    }

    /// While the code is still running (it never ends on its own), the client already has what it printed.
    @Test func streamFlushesOutputWhileTheCodeIsStillRunning() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        var reader = try await server.stream("import time\nprint('ready', flush=True)\nwhile True: time.sleep(1)")
        var printed = ""
        while !printed.hasSuffix("ready\n") {
            let event = try #require(try await reader.next())
            #expect(event.name == "stdout", "\(event.name): \(event.data)")
            guard event.name == "stdout" else { return }
            printed += try event.json()["text"] as? String ?? ""
        }
        #expect(printed == "ready\n")
        let metrics = try await server.request(.get, "/metrics")
        #expect(metrics.text.contains("codeinterp_executions_in_flight 1\n"), "\(metrics.text)")
    }

    /// Code that prints nothing writes nothing to the stream; its keep-alive finds a client that went away (a
    /// page's stop button), and the execution ends then, not when the code would have.
    @Test func aClientThatLeavesStopsCodeThatPrintsNothing() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        var request = HTTPClientRequest(url: server.base + "/v1/execute?stream=true")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(ServerFixture.apiKey)")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: ["code": "import time\ntime.sleep(25)"])))
        let response = try await client.execute(request, timeout: .seconds(60))
        var body = response.body.makeAsyncIterator()
        #expect(String(buffer: try #require(try await body.next())).hasPrefix(": execution accepted"))
        #expect(try await server.request(.get, "/metrics").text.contains("codeinterp_executions_in_flight 1\n"))
        try await client.shutdown()  // the connection closes with the request in flight

        var metrics = ""
        for _ in 0..<300 {
            metrics = try await server.request(.get, "/metrics").text
            if metrics.contains("codeinterp_executions_in_flight 0\n") { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(metrics.contains("codeinterp_executions_in_flight 0\n"))
        // Cancelled, it did not run to its end (ok after 25 s) nor to the time limit.
        #expect(!metrics.contains("codeinterp_executions_total{status=\"ok\"} 1"), "\(metrics)")
        #expect(!metrics.contains("codeinterp_executions_total{status=\"timeout\"} 1"), "\(metrics)")
    }

    /// `print('step', i)` is four writes ('step', ' ', the number, the newline); a client reads whole lines.
    @Test func streamSendsLinesNotTheWritesOfEachPrint() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        var reader = try await server.stream("for i in range(3):\n    print('step', i)")
        var printed: [String] = []
        while let event = try await reader.next(), event.name != "result" {
            if event.name == "stdout" { printed.append(try event.json()["text"] as? String ?? "") }
        }
        #expect(printed.joined() == "step 0\nstep 1\nstep 2\n")
        // Lines that came together may share an event; a line is never cut in pieces.
        #expect((1...3).contains(printed.count), "\(printed)")
        #expect(printed.allSatisfy { $0.hasSuffix("\n") }, "\(printed)")
    }

    /// A partial line (a prompt, a progress bar) is not held back until the code ends.
    @Test func streamSendsAPartialLineWhileTheCodeIsStillRunning() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        var reader = try await server.stream("import sys, time\nsys.stdout.write('working...')\nsys.stdout.flush()\nwhile True: time.sleep(1)")
        let event = try #require(try await reader.next())
        #expect(event.name == "stdout", "\(event.name): \(event.data)")
        #expect(try event.json()["text"] as? String == "working...")
        let metrics = try await server.request(.get, "/metrics")
        #expect(metrics.text.contains("codeinterp_executions_in_flight 1\n"), "\(metrics.text)")
    }

    @Test func fullQueueIsRefusedWithRetryAfter() async throws {
        let server = try await TestServer.start {
            $0.maxConcurrentExecutions = 1
            $0.maxQueuedExecutions = 0
        }
        defer { Task { await server.stop() } }
        var reader = try await server.stream("import time\nprint('started', flush=True)\ntime.sleep(20)")
        #expect(try await reader.next()?.name == "stdout")

        // The one place is taken: a flood is refused at once, each with Retry-After.
        for _ in 0..<3 {
            let refused = try await server.execute("print(1)")
            #expect(refused.status == 429)
            #expect(Int(refused.header("Retry-After") ?? "") ?? 0 >= 1)
            #expect(try refused.envelope()["code"] as? String == "queue_full")
        }
        let metrics = try await server.request(.get, "/metrics")
        #expect(metrics.text.contains("codeinterp_executions_rejected_total 3\n"))
    }

    @Test func metricsCountExecutionsAndRequests() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        _ = try await server.execute("1")
        _ = try await server.execute("1/0")
        let metrics = try await server.request(.get, "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.header("Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        let text = metrics.text
        #expect(text.contains("codeinterp_executions_total{status=\"ok\"} 1\n"), "\(text)")
        #expect(text.contains("codeinterp_executions_total{status=\"error\"} 1\n"))
        #expect(text.contains("codeinterp_execution_duration_seconds_count 2\n"))
        #expect(text.contains("codeinterp_pool_slots 3\n"))
        #expect(text.contains("codeinterp_stored_bytes "))
        #expect(text.contains("codeinterp_blocked_syscalls_total 0\n"))
        #expect(text.contains("codeinterp_http_requests_total{method=\"POST\",route=\"/v1/execute\",status=\"200\"} 2\n"))
    }
}

extension TestServer {
    /// Starts a streamed execution (20 s timeout) and returns its event reader.
    func stream(_ code: String) async throws -> SSEReader {
        var request = HTTPClientRequest(url: base + "/v1/execute?stream=true")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(ServerFixture.apiKey)")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: ["code": code, "timeout_s": 20])))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        return SSEReader(iterator: response.body.makeAsyncIterator())
    }
}

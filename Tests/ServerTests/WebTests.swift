import AsyncHTTPClient
import Foundation
import Hummingbird
@testable import Server
import Testing

/// The page at `/` as the server delivers it: public, under a policy that runs only its own scripts, with the
/// API key rules of every API route unchanged. (What the page does is tested in a browser: Tests/e2e/test_browser.py.)
@Suite("HTTP: the page at /", .serialized)
struct WebTests {
    static let webFolder = ServerFixture.packageRoot.appendingPathComponent("Sources/Server/Web")

    static func folderFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: webFolder.path).filter { !$0.hasPrefix(".") }.sorted()
    }

    @Test func thePageNeedsNoKeyAndRunsOnlyItsOwnScripts() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let page = try await server.request(.get, "/", key: nil)
        #expect(page.status == 200)
        #expect(page.header("Content-Type") == "text/html; charset=utf-8")
        let policy = try #require(page.header("Content-Security-Policy"))
        let directives = Dictionary(uniqueKeysWithValues: policy.split(separator: ";").map { part -> (String, String) in
            let words = part.trimmingCharacters(in: .whitespaces).split(separator: " ", maxSplits: 1).map(String.init)
            return (words[0], words.count > 1 ? words[1] : "")
        })
        #expect(directives["default-src"] == "'none'")
        #expect(directives["script-src"] == "'self'", "no inline script, no eval, nothing from elsewhere")
        #expect(directives["connect-src"] == "'self'")
        #expect(directives["frame-ancestors"] == "'none'")
        #expect(directives["require-trusted-types-for"] == "'script'")
        #expect(page.header("X-Content-Type-Options") == "nosniff")
        #expect(page.header("Referrer-Policy") == "no-referrer")

        // Without a key the page asks for one: the sign-in form is in it, shown by its script.
        #expect(page.text.contains("id=\"sign-in-form\""))
        #expect(page.text.contains("<script type=\"module\" src=\"/web/app.js\"></script>"))
        // With a token in the address the page is the same page: the token is the page's to keep, not the server's.
        let withToken = try await server.request(.get, "/?token=anything", key: nil)
        #expect(withToken.status == 200)
        #expect(withToken.body == page.body)
    }

    @Test func theAPIKeyRulesAreUnchanged() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        for path in ["/v1/models", "/v1/conversations", "/v1/sessions", "/metrics"] {
            #expect(try await server.request(.get, path, key: nil).status == 401, "\(path)")
            // A token in the query is not a key.
            #expect(try await server.request(.get, path + "?token=\(ServerFixture.apiKey)", key: nil).status == 401, "\(path)")
            #expect(try await server.request(.get, path, key: "wrong").status == 401, "\(path)")
        }
        #expect(try await server.request(.get, "/v1/models").status == 200)
        #expect(AuthMiddleware.publicRoutes == ["/healthz", "/openapi.json", "/", "/web/{file}"])
    }

    @Test func everyFileOfThePageIsServedWithItsTypeAndAnETag() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        #expect(Set(WebAssets.builtIn.keys) == Set(try Self.folderFiles()), "WebAssets.builtIn must list every file of Sources/Server/Web")
        let types = ["js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8", "svg": "image/svg+xml",
                     "html": "text/html; charset=utf-8"]
        for name in try Self.folderFiles() {
            let reply = try await server.request(.get, "/web/\(name)", key: nil)
            #expect(reply.status == 200, "\(name)")
            #expect(reply.header("Content-Type") == types[String(name.split(separator: ".").last!)], "\(name)")
            #expect(reply.body == (try Data(contentsOf: Self.webFolder.appendingPathComponent(name))), "the binary's copy of \(name) is stale")
            let etag = try #require(reply.header("ETag"))
            let again = try await server.request(.get, "/web/\(name)", key: nil, headers: [("If-None-Match", etag)])
            #expect(again.status == 304)
        }
        for missing in ["nothing.js", "..%2FREADME.md", ".hidden.js", "app.js.map", "%2Fetc%2Fpasswd"] {
            let reply = try await server.request(.get, "/web/\(missing)", key: nil)
            #expect(reply.status == 404, "\(missing)")
            _ = try reply.envelope()
        }
    }

    /// What the policy forbids must not be in the page: a script or a handler in the HTML, an HTML string put
    /// into the DOM by a module, a module importing what the server does not serve.
    @Test func thePageHasNoInlineCodeAndItsModulesResolve() throws {
        let html = try String(contentsOf: Self.webFolder.appendingPathComponent("index.html"), encoding: .utf8)
        #expect(html.matches(of: /<script(?![^>]*\bsrc=)/).isEmpty, "an inline <script>")
        #expect(html.matches(of: /\son[a-z]+\s*=/).isEmpty, "an inline event handler")
        #expect(html.matches(of: /(href|src)="(https?:)?\/\//).isEmpty, "something loaded from elsewhere")
        for name in try Self.folderFiles() where name.hasSuffix(".js") {
            let source = try String(contentsOf: Self.webFolder.appendingPathComponent(name), encoding: .utf8)
            for sink in [".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
                #expect(!source.contains(sink), "\(name) uses \(sink)")
            }
            for match in source.matches(of: /(?m)^import .* from '([^']+)';$/) {
                let module = String(match.1)
                #expect(module.hasPrefix("./") && WebAssets.builtIn[String(module.dropFirst(2))] != nil,
                        "\(name) imports \(module), which is not one of the page's own files")
            }
        }
    }

    @Test func aWebDirectoryServesItsOwnCopy() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("codeinterp-web-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("<!doctype html><title>edited</title>".utf8).write(to: dir.appendingPathComponent("index.html"))
        let server = try await TestServer.start { $0.webDirectory = dir.path }
        defer { Task { await server.stop() } }
        #expect(try await server.request(.get, "/", key: nil).text == "<!doctype html><title>edited</title>")
        #expect(try await server.request(.get, "/web/app.js", key: nil).status == 404)
    }

    // MARK: What the page needs from the API

    /// The chat's upload: a file stored with POST /v1/files, attached to a message, lands in the conversation's
    /// container, and the bundled demo model's code reads it; the run's own result object comes back with
    /// `include: ["x_codeinterp.execution"]`; the conversation is listed.
    @Test func anUploadedFileAttachedToAMessageIsReadByTheDemosCode() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let csv = "city,visitors\nLisbon,120\nOslo,95\n"
        let upload = try await server.upload("/v1/files", filename: "visits.csv", content: Data(csv.utf8), extraFields: ["purpose": "user_data"])
        #expect(upload.status == 200, "\(upload.text)")
        let file = try upload.json()
        let fileId = try #require(file["id"] as? String)
        #expect(file["filename"] as? String == "visits.csv")
        #expect(file["bytes"] as? Int == csv.utf8.count)
        #expect(try await server.request(.get, "/v1/files/\(fileId)/content").text == csv)

        let conversation = try await server.request(.post, "/v1/conversations", json: ["metadata": ["title": "visits"]]).json()
        let conversationId = try #require(conversation["id"] as? String)
        let reply = try await server.request(.post, "/v1/responses", json: [
            "model": "codeinterp-demo", "conversation": conversationId,
            "input": [["type": "message", "role": "user", "content": [
                ["type": "input_text", "text": "What is in it?"], ["type": "input_file", "file_id": fileId]]]],
            "tools": [["type": "code_interpreter", "container": ["type": "auto"]]],
            "include": ["x_codeinterp.execution"],
        ])
        #expect(reply.status == 200, "\(reply.text)")
        let output = try #require(try reply.json()["output"] as? [[String: Any]])
        let runs = output.filter { $0["type"] as? String == "code_interpreter_call" }
        #expect(runs.count == 2)
        let read = try #require(runs.first)
        #expect((read["code"] as? String)?.contains("pd.read_csv(\"/mnt/data/visits.csv\"") == true)
        #expect(read["outputs"] is NSNull, "OpenAI's outputs only with their own include value")
        let execution = try #require((read["x_codeinterp"] as? [String: Any])?["execution"] as? [String: Any])
        #expect(execution["status"] as? String == "ok")
        #expect(execution["stdout"] as? String == "2 rows, 2 columns: city, visitors\n")
        #expect(((execution["result"] as? [String: Any])?["text/html"] as? String)?.contains("Lisbon") == true)
        let chartRun = try #require((runs.last?["x_codeinterp"] as? [String: Any])?["execution"] as? [String: Any])
        let chart = try #require((chartRun["files"] as? [[String: Any]])?.first { $0["name"] as? String == "visits-chart.png" })
        let url = try #require(chart["url"] as? String, "files carry a signed URL when shown")
        let png = try await server.request(.get, url, key: nil)
        #expect(png.status == 200)
        #expect(png.body.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        let answer = try #require(output.last { $0["type"] as? String == "message" })
        let text = ((answer["content"] as? [[String: Any]])?.first?["text"] as? String) ?? ""
        #expect(text.contains("sandbox:/mnt/data/visits-chart.png"))

        // Stored: the items come back with the result objects (fresh URLs), and the conversation is listed.
        let items = try await server.request(.get, "/v1/conversations/\(conversationId)/items?order=asc&include=x_codeinterp.execution").json()
        let stored = try #require((items["data"] as? [[String: Any]])?.first { $0["type"] as? String == "code_interpreter_call" })
        #expect(((stored["x_codeinterp"] as? [String: Any])?["execution"] as? [String: Any])?["stdout"] as? String
                == "2 rows, 2 columns: city, visitors\n")
        let plain = try await server.request(.get, "/v1/conversations/\(conversationId)/items").json()
        #expect((plain["data"] as? [[String: Any]])?.allSatisfy { $0["x_codeinterp"] == nil } == true,
                "without the include value nothing of codeinterp's own shows")
        let list = try await server.request(.get, "/v1/conversations?limit=100").json()
        let listed = try #require((list["data"] as? [[String: Any]])?.first { $0["id"] as? String == conversationId })
        #expect((listed["metadata"] as? [String: Any])?["title"] as? String == "visits")
        #expect(list["object"] as? String == "list")
    }

    @Test func uploadsAreMultipartAndNamedSafely() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let json = try await server.request(.post, "/v1/files", json: ["file": "x"])
        #expect(json.status == 415)
        _ = try json.envelope()
        let traversal = try await server.upload("/v1/files", filename: "../../etc/evil.csv", content: Data("a".utf8))
        #expect(try traversal.json()["filename"] as? String == "evil.csv")
        #expect(try await server.upload("/v1/files", filename: "..", content: Data("a".utf8)).status == 400)
        let limited = try await TestServer.start { $0.maxUploadBytes = 8 }
        defer { Task { await limited.stop() } }
        #expect(try await limited.upload("/v1/files", filename: "big.csv", content: Data(repeating: 65, count: 100)).status == 413)
    }
}

import Foundation
import Testing

@Suite("HTTP: sessions and OpenAI-compatible containers", .serialized)
struct SessionTests {
    @Test func stateAndFilesPersistAcrossCallsOfASession() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let created = try await server.request(.post, "/v1/sessions", json: ["name": "analysis", "idle_timeout_s": 300])
        #expect(created.status == 201, "\(created.text)")
        let session = try created.json()
        let id = try #require(session["id"] as? String)
        #expect(session["object"] as? String == "session")
        #expect(session["name"] as? String == "analysis")
        #expect(session["idle_timeout_s"] as? Int == 300)

        let first = try await server.execute("x = 20\nopen('state.txt', 'w').write('kept')", extra: ["session_id": id]).json()
        #expect(first["status"] as? String == "ok", "\(first)")
        #expect(first["session_id"] as? String == id)
        let second = try await server.execute("x + 22, open('state.txt').read()", extra: ["session_id": id]).json()
        #expect((second["result"] as? [String: Any])?["text/plain"] as? String == "(42, 'kept')", "\(second)")

        let fetched = try await server.request(.get, "/v1/sessions/\(id)").json()
        #expect(fetched["execution_count"] as? Int == 2)
        let listed = try await server.request(.get, "/v1/sessions").json()
        #expect((listed["data"] as? [[String: Any]])?.contains { $0["id"] as? String == id } == true)
        let files = try await server.request(.get, "/v1/sessions/\(id)/files").json()
        #expect((files["data"] as? [[String: Any]])?.map { $0["path"] as? String } == ["/mnt/data/state.txt"])

        // Another stateless call does not see the session's variables.
        let stateless = try await server.execute("x").json()
        #expect((stateless["error"] as? [String: Any])?["name"] as? String == "NameError")

        let deleted = try await server.request(.delete, "/v1/sessions/\(id)").json()
        #expect(deleted["deleted"] as? Bool == true)
        #expect(try await server.request(.get, "/v1/sessions/\(id)").status == 404)
        let gone = try await server.execute("x", extra: ["session_id": id])
        #expect(gone.status == 404)
        #expect(try gone.envelope()["param"] as? String == "session_id")
    }

    @Test func anUploadedCSVIsReadByPandas() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let id = try #require(try await server.request(.post, "/v1/sessions", json: [:]).json()["id"] as? String)
        let csv = Data("region,sales\nnorth,10\nsouth,32\n".utf8)
        let upload = try await server.upload("/v1/sessions/\(id)/files", filename: "sales.csv", content: csv,
                                             extraFields: ["purpose": "user_data"])
        #expect(upload.status == 201, "\(upload.text)")
        let file = try upload.json()
        #expect(file["path"] as? String == "/mnt/data/sales.csv")
        #expect(file["source"] as? String == "user")
        #expect(file["bytes"] as? Int == csv.count)
        let result = try await server.execute("import pandas as pd\nint(pd.read_csv('sales.csv').sales.sum())",
                                              extra: ["session_id": id]).json()
        #expect((result["result"] as? [String: Any])?["text/plain"] as? String == "42", "\(result)")
        // The upload downloads back byte for byte.
        let back = try await server.request(.get, try #require(file["url"] as? String), key: nil)
        #expect(back.body == csv)
    }

    @Test func storedFilesCanBeGivenToAStatelessExecution() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let produced = try await server.execute("open('numbers.txt', 'w').write('1 2 3')").json()
        let fileId = try #require((produced["files"] as? [[String: Any]])?.first?["id"] as? String)
        let used = try await server.execute("sum(map(int, open('numbers.txt').read().split()))", extra: ["files": [fileId]]).json()
        #expect((used["result"] as? [String: Any])?["text/plain"] as? String == "6", "\(used)")
    }

    @Test func badUploadsGetClearErrors() async throws {
        let server = try await TestServer.start { $0.maxUploadBytes = 1_000 }
        defer { Task { await server.stop() } }
        let id = try #require(try await server.request(.post, "/v1/sessions", json: [:]).json()["id"] as? String)

        let dots = try await server.upload("/v1/sessions/\(id)/files", filename: "..", content: Data("x".utf8))
        #expect(dots.status == 400)
        let dotsError = try dots.envelope()
        #expect(dotsError["param"] as? String == "file")
        #expect((dotsError["message"] as? String)?.contains("file name") == true, "\(dotsError)")

        // As the README says: empty names and names with control characters are refused, and so is a file part
        // without a name (what an HTTP client sends for an empty one), rather than saved under a made-up name.
        let nameless = try await server.request(.post, "/v1/sessions/\(id)/files",
                                                body: Data("--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx\r\n--b--\r\n".utf8),
                                                contentType: "multipart/form-data; boundary=b")
        for (refused, why) in [(nameless, "no file name"),
                               (try await server.upload("/v1/sessions/\(id)/files", filename: "", content: Data("x".utf8)), "no file name"),
                               (try await server.upload("/v1/sessions/\(id)/files", filename: "ok\u{01}.txt", content: Data("x".utf8)),
                                "control characters")] {
            #expect(refused.status == 400, "\(refused.text)")
            let error = try refused.envelope()
            #expect(error["code"] as? String == "invalid_file_name", "\(error)")
            #expect((error["message"] as? String)?.contains(why) == true, "\(error)")
        }

        let big = try await server.upload("/v1/sessions/\(id)/files", filename: "big.bin", content: Data(count: 5_000))
        #expect(big.status == 413)
        _ = try big.envelope()

        let noFile = try await server.request(.post, "/v1/sessions/\(id)/files",
                                              body: Data("--b\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--b--\r\n".utf8),
                                              contentType: "multipart/form-data; boundary=b")
        #expect(noFile.status == 400)
        #expect((try noFile.envelope()["message"] as? String)?.contains("no part named \"file\"") == true)

        let unknownSession = try await server.upload("/v1/sessions/00000000-0000-0000-0000-000000000000/files",
                                                     filename: "a.txt", content: Data("x".utf8))
        #expect(unknownSession.status == 404)

        // A path in the name is reduced to its last component, never written outside /mnt/data.
        let sneaky = try await server.upload("/v1/sessions/\(id)/files", filename: "../../etc/evil.txt", content: Data("x".utf8))
        #expect(sneaky.status == 201, "\(sneaky.text)")
        #expect(try sneaky.json()["path"] as? String == "/mnt/data/evil.txt")
        let listed = try await server.request(.get, "/v1/sessions/\(id)/files").json()
        #expect((listed["data"] as? [[String: Any]])?.map { $0["name"] as? String } == ["evil.txt"])
    }

    @Test func aTimedOutExecutionKeepsTheSessionsFilesAndTheNextCallWorks() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let id = try #require(try await server.request(.post, "/v1/sessions", json: [:]).json()["id"] as? String)
        _ = try await server.upload("/v1/sessions/\(id)/files", filename: "data.txt", content: Data("payload".utf8))
        let slow = try await server.execute("open('made.txt', 'w').write('before')\nwhile True: pass",
                                            extra: ["session_id": id, "timeout_s": 1]).json()
        #expect(slow["status"] as? String == "timeout")
        let next = try await server.execute("import os\nsorted(os.listdir('.')), open('data.txt').read()",
                                            extra: ["session_id": id]).json()
        #expect(next["status"] as? String == "ok", "\(next)")
        #expect((next["result"] as? [String: Any])?["text/plain"] as? String == "(['data.txt', 'made.txt'], 'payload')")
    }

    @Test func anIdleSessionExpires() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let id = try #require(try await server.request(.post, "/v1/sessions", json: ["idle_timeout_s": 1]).json()["id"] as? String)
        #expect(try await server.request(.get, "/v1/sessions/\(id)").status == 200)
        try await Task.sleep(for: .milliseconds(2_100))
        #expect(try await server.request(.get, "/v1/sessions/\(id)").status == 404)
        #expect(try await server.request(.get, "/v1/containers/\(id)").status == 404)
        #expect(try await server.execute("1", extra: ["session_id": id]).status == 404)
    }

    @Test func containersFollowOpenAIShapes() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let created = try await server.request(.post, "/v1/containers", json: [
            "name": "sales", "expires_after": ["anchor": "last_active_at", "minutes": 5],
        ])
        #expect(created.status == 200, "\(created.text)")
        let container = try created.json()
        let id = try #require(container["id"] as? String)
        #expect(container["object"] as? String == "container")
        #expect(container["name"] as? String == "sales")
        #expect(container["status"] as? String == "running")
        #expect((container["expires_after"] as? [String: Any])?["minutes"] as? Int == 5)
        #expect(container["created_at"] is Int && container["last_active_at"] is Int)

        let upload = try await server.upload("/v1/containers/\(id)/files", filename: "sales.csv",
                                             content: Data("region,sales\nnorth,10\nsouth,32\n".utf8))
        #expect(upload.status == 200, "\(upload.text)")
        let cfile = try upload.json()
        #expect(Set(cfile.keys) == ["id", "object", "created_at", "bytes", "container_id", "path", "source"])
        #expect(cfile["object"] as? String == "container.file")
        #expect(cfile["container_id"] as? String == id)
        #expect(cfile["path"] as? String == "/mnt/data/sales.csv")
        #expect(cfile["source"] as? String == "user")

        // The container is a session: code runs in it through the native API.
        let run = try await server.execute("""
            import pandas as pd, matplotlib.pyplot as plt
            df = pd.read_csv('sales.csv'); df.plot.bar(x='region', y='sales'); plt.savefig('chart.png')
            int(df.sales.sum())
            """, extra: ["session_id": id]).json()
        #expect((run["result"] as? [String: Any])?["text/plain"] as? String == "42", "\(run)")

        let list = try await server.request(.get, "/v1/containers/\(id)/files").json()
        #expect(list["object"] as? String == "list")
        let data = try #require(list["data"] as? [[String: Any]])
        let chart = try #require(data.first { $0["path"] as? String == "/mnt/data/chart.png" }, "\(data)")
        #expect(chart["source"] as? String == "assistant")
        #expect(list["first_id"] as? String == data.first?["id"] as? String)
        #expect(list["has_more"] as? Bool == false)
        let chartId = try #require(chart["id"] as? String)
        let retrieved = try await server.request(.get, "/v1/containers/\(id)/files/\(chartId)").json()
        #expect(retrieved["path"] as? String == "/mnt/data/chart.png")
        let content = try await server.request(.get, "/v1/containers/\(id)/files/\(chartId)/content")
        #expect(content.body.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        #expect(content.body.count == chart["bytes"] as? Int)

        // Attach by id into another container.
        let other = try #require(try await server.request(.post, "/v1/containers", json: ["name": "copy"]).json()["id"] as? String)
        let copied = try await server.request(.post, "/v1/containers/\(other)/files", json: ["file_id": chartId])
        #expect(copied.status == 200, "\(copied.text)")
        #expect(try copied.json()["path"] as? String == "/mnt/data/chart.png")

        let deletedFile = try await server.request(.delete, "/v1/containers/\(id)/files/\(chartId)").json()
        #expect(deletedFile["object"] as? String == "container.file.deleted")
        #expect(try await server.request(.get, "/v1/containers/\(id)/files/\(chartId)").status == 404)
        let after = try await server.execute("import os; os.path.exists('chart.png')", extra: ["session_id": id]).json()
        #expect((after["result"] as? [String: Any])?["text/plain"] as? String == "False")

        let deleted = try await server.request(.delete, "/v1/containers/\(id)").json()
        #expect(deleted["object"] as? String == "container.deleted")
        #expect(deleted["deleted"] as? Bool == true)
        let missing = try await server.request(.get, "/v1/containers/\(id)")
        #expect(missing.status == 404)
        #expect(try missing.envelope()["type"] as? String == "invalid_request_error")
        _ = try await server.request(.delete, "/v1/containers/\(other)")
    }

    @Test func containerListsPageWithCursors() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        var made: [String] = []
        let prefix = "page-\(UUID().uuidString.prefix(6))"
        for i in 0..<3 {
            made.append(try #require(try await server.request(.post, "/v1/containers", json: ["name": "\(prefix)-\(i)"]).json()["id"] as? String))
        }
        defer { for id in made { Task { _ = try? await server.request(.delete, "/v1/containers/\(id)") } } }
        var seen: [String] = []
        var after: String?
        for _ in 0..<100 {
            let page = try await server.request(.get, "/v1/containers?limit=1&order=asc" + (after.map { "&after=\($0)" } ?? "")).json()
            let ids = (page["data"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            #expect(ids.count <= 1)
            seen += ids
            after = page["last_id"] as? String
            if page["has_more"] as? Bool != true { break }
        }
        #expect(seen.count == Set(seen).count, "a page repeated a container")
        let mine = seen.filter { made.contains($0) }
        #expect(mine == made, "ascending order is creation order")
        let newest = try await server.request(.get, "/v1/containers?limit=2").json()
        let newestIds = (newest["data"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
        #expect(newestIds.count == 2)
        #expect(newestIds.first == made.last, "descending is the default")
        #expect(newest["has_more"] as? Bool == true)
        let named = try await server.request(.get, "/v1/containers?name=\(prefix)-1").json()
        #expect((named["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [made[1]])

        for bad in ["limit=0", "limit=101", "order=sideways", "after=00000000-0000-0000-0000-000000000000"] {
            let reply = try await server.request(.get, "/v1/containers?\(bad)")
            #expect(reply.status == 400, "\(bad)")
            _ = try reply.envelope()
        }
    }

    @Test func badContainerRequestsAre4xx() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let noName = try await server.request(.post, "/v1/containers", json: [:])
        #expect(noName.status == 400)
        #expect(try noName.envelope()["param"] as? String == "name")
        let badExpiry = try await server.request(.post, "/v1/containers", json: ["name": "x", "expires_after": ["anchor": "last_active_at", "minutes": -5]])
        #expect(badExpiry.status == 400)
        #expect(try badExpiry.envelope()["param"] as? String == "expires_after.minutes")
        let badAnchor = try await server.request(.post, "/v1/containers", json: ["name": "x", "expires_after": ["anchor": "created_at", "minutes": 5]])
        #expect(badAnchor.status == 400)
        let network = try await server.request(.post, "/v1/containers", json: ["name": "x", "network_policy": ["type": "allowlist", "allowed_domains": ["pypi.org"]]])
        #expect(network.status == 400)
        #expect(try network.envelope()["param"] as? String == "network_policy")
        let unknownFile = try await server.request(.post, "/v1/containers", json: ["name": "x", "file_ids": ["6b1c43d5-7a4e-4c36-9b36-8e8c1d0e0d11"]])
        #expect(unknownFile.status == 404)
        #expect(try unknownFile.envelope()["param"] as? String == "file_ids[0]")
        #expect(try await server.request(.get, "/v1/containers/no-such-container/files").status == 404)
        #expect(try await server.request(.get, "/v1/containers/00000000-0000-0000-0000-000000000000").status == 404)
    }
}

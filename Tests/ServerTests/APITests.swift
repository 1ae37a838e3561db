import AsyncHTTPClient
import Foundation
import Hummingbird
import Server
import Testing

@Suite("HTTP: auth, errors, downloads, CORS, OpenAPI", .serialized)
struct APITests {
    @Test func everyRouteButHealthAndOpenAPINeedsAKey() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let health = try await server.request(.get, "/healthz", key: nil)
        #expect(health.status == 200)
        #expect(try health.json()["status"] as? String == "ok")
        #expect(try await server.request(.get, "/openapi.json", key: nil).status == 200)

        for (method, path) in [(HTTPClientMethod.post, "/v1/execute"), (.get, "/metrics"),
                               (.get, "/v1/files/00000000-0000-0000-0000-000000000000")] {
            let reply = try await server.request(method, path, key: nil, json: method == .post ? ["code": "1"] : nil)
            #expect(reply.status == 401, "\(path)")
            let error = try reply.envelope()
            #expect(error["type"] as? String == "authentication_error")
            #expect(error["param"] is NSNull)
            #expect(reply.header("WWW-Authenticate") == "Bearer")
        }
        let wrong = try await server.request(.get, "/metrics", key: "not-the-key")
        #expect(wrong.status == 401)
        #expect(try wrong.envelope()["message"] as? String == "invalid API key")
        let viaHeader = try await server.request(.get, "/metrics", key: nil, headers: [("X-API-Key", ServerFixture.apiKey)])
        #expect(viaHeader.status == 200)
    }

    @Test func rateLimitPerKeyAnswers429WithRetryAfter() async throws {
        let server = try await TestServer.start {
            $0.apiKeys = [ServerFixture.apiKey, "second-key"]
            $0.rateLimitPerMinute = 1
            $0.rateLimitBurst = 2
        }
        defer { Task { await server.stop() } }
        #expect(try await server.request(.get, "/metrics").status == 200)
        #expect(try await server.request(.get, "/metrics").status == 200)
        let limited = try await server.request(.get, "/metrics")
        #expect(limited.status == 429)
        #expect(Int(limited.header("Retry-After") ?? "") ?? 0 >= 1)
        #expect(try limited.envelope()["type"] as? String == "rate_limit_error")
        // Another key has its own bucket; health checks are never limited.
        #expect(try await server.request(.get, "/metrics", key: "second-key").status == 200)
        #expect(try await server.request(.get, "/healthz", key: nil).status == 200)
    }

    @Test func badRequestsGetClearEnvelopesAndTheServerKeepsServing() async throws {
        let server = try await TestServer.start { $0.maxCodeBytes = 1_000; $0.maxRequestBytes = 8_192 }
        defer { Task { await server.stop() } }

        let malformed = try await server.request(.post, "/v1/execute", body: Data("{\"code\": ".utf8), contentType: "application/json")
        #expect(malformed.status == 400)
        #expect((try malformed.envelope()["message"] as? String)?.contains("not valid JSON") == true)

        let missing = try await server.request(.post, "/v1/execute", json: ["session_id": "x"])
        #expect(missing.status == 400)
        #expect(try missing.envelope()["param"] as? String == "code")

        let wrongType = try await server.request(.post, "/v1/execute", json: ["code": 42])
        #expect(wrongType.status == 400)
        let wrongTypeError = try wrongType.envelope()
        #expect(wrongTypeError["param"] as? String == "code")
        #expect((wrongTypeError["message"] as? String)?.contains("must be a string") == true)

        let typo = try await server.request(.post, "/v1/execute", json: ["code": "1", "sesion_id": "x"])
        #expect(typo.status == 400)
        let typoError = try typo.envelope()
        #expect(typoError["param"] as? String == "sesion_id")
        #expect((typoError["message"] as? String)?.contains("session_id") == true)

        let badTimeout = try await server.request(.post, "/v1/execute", json: ["code": "1", "timeout_s": -1])
        #expect(badTimeout.status == 400)
        #expect(try badTimeout.envelope()["param"] as? String == "timeout_s")

        let notObject = try await server.request(.post, "/v1/execute", json: [1, 2])
        #expect(notObject.status == 400)

        let bigCode = try await server.execute(String(repeating: "#", count: 2_000))
        #expect(bigCode.status == 413)
        #expect(try bigCode.envelope()["param"] as? String == "code")

        let bigBody = try await server.request(.post, "/v1/execute", json: ["code": "1", "files": Array(repeating: "x", count: 3_000)])
        #expect(bigBody.status == 413)
        _ = try bigBody.envelope()

        let form = try await server.request(.post, "/v1/execute", body: Data("code=1".utf8), contentType: "application/x-www-form-urlencoded")
        #expect(form.status == 415)
        _ = try form.envelope()

        let unknownFile = try await server.request(.post, "/v1/execute", json: ["code": "1", "files": ["6b1c43d5-7a4e-4c36-9b36-8e8c1d0e0d11"]])
        #expect(unknownFile.status == 404)
        #expect(try unknownFile.envelope()["param"] as? String == "files[0]")

        for path in ["/v1/files/6b1c43d5-7a4e-4c36-9b36-8e8c1d0e0d11", "/v1/files/..%2F..%2Fetc%2Fpasswd",
                     "/v1/files/not-a-uuid/content"] {
            let reply = try await server.request(.get, path)
            #expect(reply.status == 404, "\(path)")
            _ = try reply.envelope()
        }
        let deleteUnknown = try await server.request(.delete, "/v1/files/6b1c43d5-7a4e-4c36-9b36-8e8c1d0e0d11")
        #expect(deleteUnknown.status == 404)

        let noRoute = try await server.request(.get, "/v1/nothing-here")
        #expect(noRoute.status == 404)
        #expect(try noRoute.envelope()["code"] as? String == "unknown_route")

        // Still serving after all of that.
        let ok = try await server.execute("1 + 1")
        #expect(ok.status == 200)
        #expect((try ok.json()["result"] as? [String: Any])?["text/plain"] as? String == "2")
    }

    @Test func fileDownloadHeadersCachingAndRanges() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let result = try await server.execute("""
            open('données.csv', 'w').write('a,b\\n1,2\\n')
            from PIL import Image
            Image.new('RGB', (4, 4), 'red').save('dot.png')
            """).json()
        let files = try #require(result["files"] as? [[String: Any]])
        let csv = try #require(files.first { $0["name"] as? String == "données.csv" }, "\(files)")
        let png = try #require(files.first { $0["name"] as? String == "dot.png" })
        let id = try #require(csv["id"] as? String)

        let meta = try await server.request(.get, "/v1/files/\(id)").json()
        #expect(meta["object"] as? String == "file")
        #expect(meta["filename"] as? String == "données.csv")
        #expect(meta["bytes"] as? Int == 8)
        #expect(meta["mime_type"] as? String == "text/csv")
        #expect(meta["source"] as? String == "assistant")
        #expect(meta["created_at"] is Int)

        let full = try await server.request(.get, "/v1/files/\(id)/content")
        #expect(full.status == 200)
        #expect(full.text == "a,b\n1,2\n")
        #expect(full.header("Content-Type") == "text/csv; charset=utf-8")
        #expect(full.header("Content-Disposition") == "attachment; filename=\"donn_es.csv\"; filename*=UTF-8''donn%C3%A9es.csv")
        #expect(full.header("Accept-Ranges") == "bytes")
        let etag = try #require(full.header("ETag"))
        #expect(etag == "\"\(csv["sha256"] as! String)\"")

        let notModified = try await server.request(.get, "/v1/files/\(id)/content", headers: [("If-None-Match", "\"other\", \(etag)")])
        #expect(notModified.status == 304)
        #expect(notModified.body.isEmpty)
        let changed = try await server.request(.get, "/v1/files/\(id)/content", headers: [("If-None-Match", "\"other\"")])
        #expect(changed.status == 200)

        let partial = try await server.request(.get, "/v1/files/\(id)/content", headers: [("Range", "bytes=2-4")])
        #expect(partial.status == 206)
        #expect(partial.text == "b\n1")
        #expect(partial.header("Content-Range") == "bytes 2-4/8")
        let suffix = try await server.request(.get, "/v1/files/\(id)/content", headers: [("Range", "bytes=-2")])
        #expect(suffix.status == 206)
        #expect(suffix.text == "2\n")
        let unsatisfiable = try await server.request(.get, "/v1/files/\(id)/content", headers: [("Range", "bytes=100-")])
        #expect(unsatisfiable.status == 416)
        #expect(unsatisfiable.header("Content-Range") == "bytes */8")
        _ = try unsatisfiable.envelope()

        let image = try await server.request(.get, "/v1/files/\(png["id"] as! String)/content")
        #expect(image.header("Content-Type") == "image/png")
        #expect(image.header("Content-Disposition")?.hasPrefix("inline; filename=\"dot.png\"") == true)

        let deleted = try await server.request(.delete, "/v1/files/\(id)").json()
        #expect(deleted["deleted"] as? Bool == true)
        #expect(deleted["id"] as? String == id)
        #expect(try await server.request(.get, "/v1/files/\(id)/content").status == 404)
        // A signed URL for a deleted file does not bring it back.
        #expect(try await server.request(.get, csv["url"] as! String, key: nil).status == 404)
    }

    @Test func corsAllowsConfiguredOriginsOnly() async throws {
        let server = try await TestServer.start { $0.corsOrigins = ["https://app.example.com"] }
        defer { Task { await server.stop() } }
        let preflight = try await server.request(.options, "/v1/execute", key: nil, headers: [
            ("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "authorization, content-type"),
        ])
        #expect(preflight.status == 204)
        #expect(preflight.header("Access-Control-Allow-Origin") == "https://app.example.com")
        #expect(preflight.header("Access-Control-Allow-Methods")?.contains("POST") == true)
        #expect(preflight.header("Access-Control-Allow-Headers") == "authorization, content-type")

        let simple = try await server.request(.get, "/healthz", key: nil, headers: [("Origin", "https://app.example.com")])
        #expect(simple.header("Access-Control-Allow-Origin") == "https://app.example.com")
        #expect(simple.header("Access-Control-Expose-Headers")?.contains("Retry-After") == true)

        let other = try await server.request(.get, "/healthz", key: nil, headers: [("Origin", "https://evil.example.com")])
        #expect(other.header("Access-Control-Allow-Origin") == nil)
        let otherPreflight = try await server.request(.options, "/v1/execute", key: nil, headers: [
            ("Origin", "https://evil.example.com"), ("Access-Control-Request-Method", "POST"),
        ])
        #expect(otherPreflight.header("Access-Control-Allow-Origin") == nil)
    }

    /// The document is written by hand; the router is what is served. They must name the same operations.
    @Test func aMethodAPathDoesNotServeIs405NamingTheOnesItDoes() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let execute = try await server.request(.delete, "/v1/execute")
        #expect(execute.status == 405)
        #expect(execute.header("Allow") == "POST")
        #expect(try execute.envelope()["code"] as? String == "method_not_allowed")
        let file = try await server.request(.post, "/v1/files/00000000-0000-0000-0000-000000000000", json: [:])
        #expect(file.status == 405)
        #expect(file.header("Allow") == "DELETE, GET")
        #expect(try await server.request(.get, "/v1/no-such-route").status == 404)
    }

    @Test func openAPIDocumentsExactlyTheServedRoutes() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let served = Set(server.server.buildRouter().routes.map { "\($0.method.rawValue) \($0.path.description)" })
        let reply = try await server.request(.get, "/openapi.json", key: nil)
        let document = try reply.json()
        #expect(document["openapi"] as? String == "3.1.0")
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        var documented = Set<String>()
        for (path, operations) in paths {
            for method in operations.keys { documented.insert("\(method.uppercased()) \(path)") }
        }
        #expect(!served.isEmpty)
        #expect(served.subtracting(documented).sorted() == [], "served but not documented")
        #expect(documented.subtracting(served).sorted() == [], "documented but not served")
        // Every $ref points at a schema that exists.
        let schemas = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: Any])
        let refs = Set(reply.text.matches(of: /#\/components\/schemas\/([A-Za-z]+)/).map { String($0.1) })
        #expect(refs.subtracting(schemas.keys).sorted() == [])
    }
}

import Foundation
import InterpreterCore
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs the built `codeinterp chat` as a user would (posix_spawn: Foundation.Process can miss a child's exit).
@Suite("codeinterp chat", .serialized)
struct ChatCLITests {
    static let root = ToolFixture.packageRoot
    static let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent("codeinterp-chat-\(getpid())").path

    /// Runs the built binary with this suite's data directory and profiles (plus `extra` variables).
    func codeinterp(_ args: [String], environment extra: [String: String] = [:]) throws -> Subprocess.Output {
        var env = ProcessInfo.processInfo.environment
        env["CODEINTERP_DATA_DIR"] = Self.dataDir
        env["CODEINTERP_PROFILES_DIR"] = Self.root.appendingPathComponent("sandbox-profiles").path
        env["CODEINTERP_PRELOAD"] = "numpy,pandas,matplotlib.pyplot"
        for (k, v) in extra { env[k] = v }
        return try Subprocess.run([Subprocess.codeinterpBinary()] + args, environment: env)
    }

    func tempPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(getpid())-\(UUID().uuidString.prefix(8))").path
    }

    func writeScript(_ turns: JSONValueLiteral) throws -> String {
        let path = tempPath("script") + ".json"
        try turns.text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func scriptedDemoSavesItsChartAndResolvesTheLinks() throws {
        let out = tempPath("demo-out")
        let r = try codeinterp(["chat", "--script", Self.root.appendingPathComponent("examples/scripted-demo.json").path,
                                "--message", "Summarise the sales and draw a chart", "--out", out])
        #expect(r.status == 0, "\(r.stderr)")
        let png = try Data(contentsOf: URL(fileURLWithPath: out + "/chart.png"))
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        #expect(FileManager.default.fileExists(atPath: out + "/sales.csv"))
        #expect(r.stdout.contains("total sales 1340"))
        #expect(r.stdout.contains("link: chart.png -> file://\(out)/chart.png"), "\(r.stdout)")
        let transcript = try String(contentsOfFile: out + "/transcript.md", encoding: .utf8)
        #expect(transcript.contains("[chart.png](file://\(out)/chart.png)"))
        #expect(transcript.contains("Here is the chart: [chart.png](file://\(out)/chart.png)"))
        #expect(!transcript.contains("(sandbox:/mnt/data/chart.png)"))
        #expect(r.stderr.contains("--resume chat_"))

        // The transcript reads as the conversation went: the user, then each of the model's three turns with
        // what it said, the code it ran and what that printed.
        let headings = transcript.split(separator: "\n").filter { $0.hasPrefix("## ") }
        #expect(headings == ["## user", "## assistant", "## assistant", "## assistant"], "\(transcript)")
        let story = ["## user", "Summarise the sales and draw a chart",
                     "## assistant", "I'll write the quarterly sales data to a CSV file and summarise it first.",
                     "```python\nimport pandas as pd", "result (ok):", "12 rows, total sales 1340",
                     "## assistant", "Now a chart of sales per quarter for each region.",
                     "```python\nimport matplotlib.pyplot as plt", "result (ok):", "chart.png",
                     "## assistant", "North sold the most"]
        var rest = Substring(transcript)
        for piece in story {
            guard let found = rest.range(of: piece) else {
                Issue.record("\"\(piece)\" is missing or out of order in:\n\(transcript)")
                break
            }
            rest = rest[found.upperBound...]
        }
    }

    @Test func resumeContinuesTheSameSessionAndItsFiles() throws {
        let script = try writeScript(JSONValueLiteral(text: """
            {"turns": [
              {"tool_calls": [{"name": "execute_python", "arguments": {"code": "open('memo.txt', 'w').write('remember 1729')"}}]},
              {"content": "Saved [memo](sandbox:/mnt/data/memo.txt)."},
              {"tool_calls": [{"name": "execute_python", "arguments": {"code": "print(open('memo.txt').read())"}}]},
              {"content": "It says the memo."}
            ]}
            """))
        let first = try codeinterp(["chat", "--script", script, "--message", "write a memo"])
        #expect(first.status == 0, "\(first.stderr)")
        let id = try #require(first.stderr.firstMatch(of: /--resume (chat_[0-9a-f]+)/)?.1)
        let second = try codeinterp(["chat", "--script", script, "--resume", String(id), "--message", "what did it say?"])
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stderr.contains("resuming conversation \(id)"))
        #expect(second.stdout.contains("> remember 1729"), "\(second.stdout)")
        let unknown = try codeinterp(["chat", "--script", script, "--resume", "chat_nope", "--message", "hi"])
        #expect(unknown.status == 2 && unknown.stderr.contains("no stored conversation chat_nope"))
    }

    @Test func malformedToolArgumentsAreShownAndTheModelRetries() throws {
        let script = try writeScript(JSONValueLiteral(text: """
            {"turns": [
              {"tool_calls": [{"id": "call_bad", "name": "execute_python", "arguments": "{\\"code\\": print(1)"}]},
              {"tool_calls": [{"id": "call_good", "name": "execute_python", "arguments": {"code": "6 * 7"}}]},
              {"content": "The answer is 42."}
            ]}
            """))
        let r = try codeinterp(["chat", "--script", script, "--message", "compute"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("bad call: The arguments of the call are not valid JSON"), "\(r.stdout)")
        #expect(r.stdout.contains("= 42"))
        #expect(r.stdout.contains("The answer is 42."))
    }

    @Test func roundLimitStopsAModelThatNeverAnswers() throws {
        let call = #"{"tool_calls": [{"name": "execute_python", "arguments": {"code": "1"}}]}"#
        let script = try writeScript(JSONValueLiteral(text: "{\"turns\": [\(Array(repeating: call, count: 5).joined(separator: ","))]}"))
        let r = try codeinterp(["chat", "--script", script, "--message", "loop", "--max-rounds", "2"])
        #expect(r.stderr.contains("stopped after 2 rounds"))
        #expect(r.stdout.components(separatedBy: "[execute_python]").count - 1 == 2)
    }

    @Test func providerErrorsAreShownPlainly() throws {
        let unreachable = try codeinterp(["chat", "--base-url", "http://127.0.0.1:9/v1", "--message", "hi"],
                                         environment: ["OPENAI_API_KEY": "sk-test"])
        #expect(unreachable.status == 1)
        #expect(unreachable.stderr.contains("cannot reach http://127.0.0.1:9/v1/chat/completions"), "\(unreachable.stderr)")
        let noKey = try codeinterp(["chat", "--api-key-env", "NO_SUCH_KEY_VARIABLE", "--message", "hi"])
        #expect(noKey.status == 2 && noKey.stderr.contains("NO_SUCH_KEY_VARIABLE"))
    }
}

/// A script's JSON text (kept as text: some scripts deliberately hold invalid tool arguments).
struct JSONValueLiteral {
    var text: String
}

import ArgumentParser
import Foundation
import Sandbox

/// Timings through one warm engine, as JSON, for scripts/bench (which adds the side-by-side alternatives).
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Measure executions through a warm engine (used by scripts/bench).", shouldDisplay: false)

    @Option var iterations = 30
    @Option var file: String
    @Option var label: String
    @OptionGroup var engineOptions: EngineOptions

    func run() async throws {
        let code = try String(contentsOfFile: file, encoding: .utf8)
        let engine = try ExecutionEngine(configuration: .defaults(dataDirectory: engineOptions.dataDirectory), logger: quietLogger())
        defer { engine.shutdown() }
        try await engine.start()
        _ = try await engine.execute(ExecutionRequest(code: code))
        var endToEnd: [Double] = [], inChild: [Double] = []
        for _ in 0..<iterations {
            let t = Date()
            let r = try await engine.execute(ExecutionRequest(code: code))
            endToEnd.append(Date().timeIntervalSince(t) * 1000)
            inChild.append(Double(r.usage.wallMs))
            guard r.status == .ok else { throw ValidationError("benchmark code failed: \(r.error?.value ?? r.status.rawValue)") }
        }
        func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }
        print(#"{"label":"\#(label)","engine_ms":\#(median(endToEnd)),"fork_to_exit_ms":\#(median(inChild))}"#)
    }
}

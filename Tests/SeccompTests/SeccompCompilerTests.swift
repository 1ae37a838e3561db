import Foundation
import InterpreterCore
import Seccomp
import Testing

let profilesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("sandbox-profiles").path

@Test func exportForHarness() throws {
    guard let out = ProcessInfo.processInfo.environment["CI_EXPORT_BPF"] else { return }
    var p = try SandboxProfile.load(ProcessInfo.processInfo.environment["CI_EXPORT_PROFILE"] ?? "default", directory: profilesDirectory)
    if let e = ProcessInfo.processInfo.environment["CI_EXPORT_ERRNO"] { p.seccomp.defaultErrnoRet = Int(e) }
    let f = try SeccompCompiler.compile(p)
    try Data(f.bpf).write(to: URL(fileURLWithPath: out))
    try SeccompCompiler.pseudoFilterCode(p).write(toFile: out + ".pfc", atomically: true, encoding: .utf8)
    print("instructions", f.instructionCount, f.key)
}

import Foundation
import Testing
@testable import InterpreterCore

/// The repository's sandbox-profiles directory.
let shippedProfiles = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("sandbox-profiles").path

/// A fresh directory with the given files.
func profileDirectory(_ files: [String: String]) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("profiles-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    for (name, text) in files {
        try text.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8)
    }
    return dir.path
}

func parseError(_ text: String, source: String = "test.json", directory: String? = nil) -> ProfileError? {
    do {
        _ = try SandboxProfile.parse(text, source: source, directory: directory)
        return nil
    } catch {
        return error
    }
}

func loadError(_ name: String, directory: String) -> ProfileError? {
    do {
        _ = try SandboxProfile.load(name, directory: directory)
        return nil
    } catch {
        return error
    }
}

/// A minimal valid base-less profile with extra top-level members and rules.
func minimalProfile(extra: String = "", rules: String = #"{"names": ["read"], "action": "SCMP_ACT_ALLOW"}"#) -> String {
    """
    {
      "name": "t",\(extra)
      "seccomp": {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
          \(rules)
        ]
      }
    }
    """
}

@Suite struct ProfileParserTests {
    @Test func shippedDefaultProfileParses() throws {
        let p = try SandboxProfile.load("default", directory: shippedProfiles)
        #expect(p.name == "default")
        #expect(p.network == false)
        #expect(p.source.hasSuffix("sandbox-profiles/default.json"))
        #expect(p.limits == Limits(), "default.json should spell out the built-in limits")
        #expect(p.seccomp.defaultAction == .errno)
        #expect(p.seccomp.defaultErrnoRet == 1)
        let allowed = Set(p.seccomp.syscalls.filter { $0.action == .allow && $0.args.isEmpty }.flatMap(\.names))
        for name in ["read", "write", "mmap", "futex", "execve", "wait4", "getrandom", "memfd_create", "socketpair"] {
            #expect(allowed.contains(name), "\(name) should be allowed")
        }
        let killed = Set(p.seccomp.syscalls.filter { $0.action.kills && $0.args.isEmpty }.flatMap(\.names))
        for name in ["ptrace", "bpf", "mount", "unshare", "setns", "kexec_load", "perf_event_open", "userfaultfd",
                     "process_vm_readv", "keyctl", "open_by_handle_at", "io_uring_setup"] {
            #expect(killed.contains(name), "\(name) should kill")
        }
        #expect(!allowed.contains("ptrace") && !allowed.contains("setuid"))
        let clone3 = p.seccomp.syscalls.first { $0.names.contains("clone3") }
        #expect(clone3?.action == .errno && clone3?.errnoRet == 38)
        let clone = p.seccomp.syscalls.first { $0.names == ["clone"] }
        #expect(clone?.args == [SeccompArg(index: 0, value: 0x7E02_0000, valueTwo: 0, op: .maskedEqual)])
        // Every rule has a comment saying why.
        #expect(p.seccomp.syscalls.allSatisfy { !($0.comment ?? "").isEmpty })
        // Rules remember where they are, for the Seccomp layer's messages.
        let readRule = p.seccomp.syscalls.first { $0.names.contains("read") }!
        let i = readRule.names.firstIndex(of: "read")!
        #expect(readRule.location(ofName: i).line > readRule.location.line)
        #expect(readRule.location(ofName: i).source == p.source)
    }

    @Test func shippedNetworkProfileExtendsDefault() throws {
        let base = try SandboxProfile.load("default", directory: shippedProfiles)
        let p = try SandboxProfile.load("network", directory: shippedProfiles)
        #expect(p.network)
        #expect(p.name == "network")
        #expect(p.limits == base.limits)
        #expect(p.seccomp.syscalls == base.seccomp.syscalls)
        #expect(p.bases == [base.source])
    }

    @Test func typoInKeyNamesTheLineAndSuggests() {
        let text = """
            {
              "name": "t",
              "netwrok": true,
              "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}
            }
            """
        let e = parseError(text, source: "default.json")
        #expect(e?.line == 3)
        #expect(e?.column == 3)
        #expect(e?.description.hasPrefix("default.json:3:3: unknown key \"netwrok\" in a profile (did you mean \"network\"?)") == true,
                "\(String(describing: e))")
        #expect(e?.message.contains("allowed: name, description, extends, network, limits, seccomp") == true)
    }

    @Test func typosDeeperInTheFileAreLocatedToo() {
        let e1 = parseError(minimalProfile(extra: "\n  \"limits\": {\"wallSeconds\": 10},"))
        #expect(e1?.line == 3 && e1?.column == 14)
        #expect(e1?.message.contains("did you mean \"wall_seconds\"?") == true, "\(String(describing: e1))")

        let e2 = parseError(minimalProfile(rules: #"{"names": ["read"], "acton": "SCMP_ACT_ALLOW"}"#))
        #expect(e2?.line == 6)
        #expect(e2?.message.contains("did you mean \"action\"?") == true, "\(String(describing: e2))")

        let e3 = parseError(minimalProfile(rules: #"{"names": ["read"], "action": "SCMP_ACT_ALOW"}"#))
        #expect(e3?.line == 6 && e3?.column == 37)
        #expect(e3?.message.contains("unknown action \"SCMP_ACT_ALOW\" (did you mean \"SCMP_ACT_ALLOW\"?)") == true)
    }

    @Test func malformedJSONGivesLineAndColumn() {
        let text = "{\n  \"name\": \"t\"\n  \"network\": true\n}"
        let e = parseError(text, source: "bad.json")
        #expect(e?.description == "bad.json:3:3: missing ',' between object members")
    }

    @Test func wrongTypesAreExplained() {
        let e1 = parseError(minimalProfile(extra: "\n  \"network\": \"no\","))
        #expect(e1?.line == 3 && e1?.column == 14)
        #expect(e1?.message == "\"network\" must be true or false, found a string (\"no\")")

        let e2 = parseError(minimalProfile(rules: #"{"names": "read", "action": "SCMP_ACT_ALLOW"}"#))
        #expect(e2?.message == "\"names\" must be an array, found a string (\"read\")")

        let e3 = parseError(minimalProfile(extra: "\n  \"limits\": {\"processes\": 1.5},"))
        #expect(e3?.message.contains("whole number") == true)
    }

    @Test func negativeAndZeroLimitsAreRejected() {
        let e1 = parseError(minimalProfile(extra: "\n  \"limits\": {\"memory_bytes\": -1},"))
        #expect(e1?.line == 3 && e1?.column == 30)
        #expect(e1?.message == "\"limits.memory_bytes\" must not be negative, found -1")
        let e2 = parseError(minimalProfile(extra: "\n  \"limits\": {\"wall_seconds\": 0},"))
        #expect(e2?.message.contains("positive") == true)
        // Zero captured output is a legitimate choice.
        #expect(parseError(minimalProfile(extra: "\n  \"limits\": {\"stdout_bytes\": 0},")) == nil)
    }

    @Test func absentLimitsTakeTheBuiltInDefaults() throws {
        let p = try SandboxProfile.parse(minimalProfile(extra: "\n  \"limits\": {\"wall_seconds\": 2.5, \"processes\": 8},"),
                                         source: "<inline>", directory: nil)
        var expected = Limits()
        expected.wallSeconds = 2.5
        expected.processes = 8
        #expect(p.limits == expected)
        #expect(p.name == "t")
        #expect(p.network == false)
    }

    @Test func limitKeysMatchTheLimitsCodingKeys() throws {
        let encoded = try JSONEncoder().encode(Limits())
        let object = try JSONSerialization.jsonObject(with: encoded) as? [String: Any]
        #expect(Set(object?.keys.map { $0 } ?? []) == Set(Reader.limitKeys))
        // And every one of them is applied.
        let all = Reader.limitKeys.map { "\"\($0)\": 7" }.joined(separator: ", ")
        let p = try SandboxProfile.parse(minimalProfile(extra: "\n  \"limits\": {\(all)},"), source: "<inline>",
                                         directory: nil)
        let seven = Limits(wallSeconds: 7, cpuSeconds: 7, memoryBytes: 7, processes: 7, fileSizeBytes: 7, openFiles: 7,
                           stdoutBytes: 7, stderrBytes: 7, outputFiles: 7, outputBytes: 7, outputDepth: 7, tmpBytes: 7,
                           maxMemoryBytes: 7, dataBytes: 7)
        #expect(p.limits == seven)
    }

    @Test func argumentConditionsAreValidated() {
        func rule(_ args: String) -> String {
            #"{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [\#(args)]}"#
        }
        let e1 = parseError(minimalProfile(rules: rule(#"{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}"#)))
        #expect(e1?.message.contains("\"index\" must be from 0 to 5") == true)
        #expect(e1?.line == 6)
        let e2 = parseError(minimalProfile(rules: rule(#"{"index": 0, "value": 1, "op": "SCMP_CMP_EQUAL"}"#)))
        #expect(e2?.message.contains("unknown operator \"SCMP_CMP_EQUAL\"") == true)
        let e3 = parseError(minimalProfile(rules: rule(#"{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}"#)))
        #expect(e3?.message.contains("compared twice") == true)
        let e4 = parseError(minimalProfile(rules: rule(#"{"index": 0, "value": 255, "valueTwo": 256, "op": "SCMP_CMP_MASKED_EQ"}"#)))
        #expect(e4?.message.contains("can never match") == true)
        let e5 = parseError(minimalProfile(rules: rule(#"{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}"#)))
        #expect(e5?.message.contains("must not be negative") == true)
        let e6 = parseError(minimalProfile(rules: #"{"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}"#))
        #expect(e6?.message.contains("only applies to SCMP_ACT_ERRNO") == true)
        let e7 = parseError(minimalProfile(rules: #"{"names": ["Read"], "action": "SCMP_ACT_ALLOW"}"#))
        #expect(e7?.message.contains("did you mean \"read\"") == true)
        let e8 = parseError(minimalProfile(rules: #"{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}"#))
        #expect(e8?.message.contains("not supported") == true)
    }

    @Test func dockerIncludesAndExcludesAreHonoured() throws {
        let rules = """
            {"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {}, "excludes": {}, "args": null, "comment": ""},
                  {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                  {"names": ["write"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                  {"names": ["sync"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}},
                  {"names": ["close"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["s390x"]}},
                  {"names": ["pipe"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}}
            """
        let p = try SandboxProfile.parse(minimalProfile(rules: rules), source: "<inline>", directory: nil)
        #expect(p.seccomp.syscalls.flatMap(\.names) == ["read", "write", "close"])
    }

    @Test func extendsMergesLimitsAndAddsRules() throws {
        let base = minimalProfile(extra: """

              "description": "the base",
              "limits": {"wall_seconds": 10, "processes": 5},
            """, rules: #"{"names": ["read"], "action": "SCMP_ACT_ALLOW"}, {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"}"#)
        let child = """
            {
              "extends": "base",
              "network": true,
              "limits": {"wall_seconds": 60},
              "seccomp": {"syscalls": [{"names": ["write"], "action": "SCMP_ACT_ALLOW"}]}
            }
            """
        let dir = try profileDirectory(["base.json": base, "child.json": child])
        let p = try SandboxProfile.load("child", directory: dir)
        #expect(p.name == "child")
        #expect(p.description == "the base")
        #expect(p.network)
        #expect(p.limits.wallSeconds == 60)
        #expect(p.limits.processes == 5)
        #expect(p.limits.memoryBytes == Limits().memoryBytes)
        #expect(p.seccomp.syscalls.map(\.names) == [["read"], ["ptrace"], ["write"]])
        #expect(p.seccomp.syscalls[2].location.source == dir + "/child.json")
        #expect(p.seccomp.syscalls[0].location.source == dir + "/base.json")
        #expect(p.bases == [dir + "/base.json"])
        // A path works as well as a name, relative to the extending file.
        let viaPath = try SandboxProfile.parse(child.replacingOccurrences(of: "\"base\"", with: "\"./base.json\""),
                                               source: dir + "/other.json", directory: "/nonexistent")
        #expect(viaPath.limits.processes == 5)
    }

    @Test func extendsCycleIsAnError() throws {
        let dir = try profileDirectory([
            "a.json": "{\n  \"extends\": \"b\"\n}",
            "b.json": "{\n  \"network\": true,\n  \"extends\": \"a\"\n}",
        ])
        let e = loadError("a", directory: dir)
        #expect(e?.message == "\"extends\" makes a cycle: a.json -> b.json -> a.json", "\(String(describing: e))")
        #expect(e?.source == dir + "/b.json")
        #expect(e?.line == 3 && e?.column == 14)
        let selfCycle = try profileDirectory(["s.json": "{\"extends\": \"s\"}"])
        #expect(loadError("s", directory: selfCycle)?.message.contains("cycle: s.json -> s.json") == true)
    }

    @Test func missingBaseIsAnErrorWithSuggestions() throws {
        let dir = try profileDirectory([
            "default.json": minimalProfile(),
            "child.json": "{\n  \"extends\": \"defualt\"\n}",
        ])
        let e = loadError("child", directory: dir)
        #expect(e?.line == 2 && e?.column == 14)
        #expect(e?.message.contains("base profile \"defualt\" cannot be read") == true)
        #expect(e?.message.contains("(did you mean \"default\"?)") == true, "\(String(describing: e))")
        #expect(loadError("nope", directory: dir)?.message.contains("cannot read profile") == true)
        #expect(parseError("{\"extends\": \"default\"}", directory: nil)?.message.contains("needs a profile directory") == true)
    }

    @Test func extendingProfileCannotAllowWhatTheBaseKills() throws {
        let base = minimalProfile(rules: """
            {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"},
                  {"names": ["socket"], "action": "SCMP_ACT_KILL_PROCESS", "args": [{"index": 0, "value": 38, "op": "SCMP_CMP_EQ"}]}
            """)
        let dir = try profileDirectory([
            "base.json": base,
            "loose.json": """
                {
                  "extends": "base",
                  "seccomp": {"syscalls": [
                    {"names": ["read", "ptrace"], "action": "SCMP_ACT_ALLOW"}
                  ]}
                }
                """,
            "loose2.json": """
                {"extends": "base", "seccomp": {"syscalls": [
                  {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 38, "op": "SCMP_CMP_EQ"}]}]}}
                """,
            "fine.json": """
                {"extends": "base", "seccomp": {"syscalls": [
                  {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
                  {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]}}
                """,
        ])
        let e = loadError("loose", directory: dir)
        #expect(e?.source == dir + "/loose.json")
        #expect(e?.line == 4 && e?.column == 24, "\(String(describing: e))")
        #expect(e?.message.contains("the base profile \"base\" kills it") == true)
        #expect(loadError("loose2", directory: dir)?.message.contains("kills it for these arguments") == true)
        // Allowing other arguments, or turning a kill into an error return, is not loosening.
        #expect(loadError("fine", directory: dir) == nil)
    }

    @Test func extendingProfileOnlyAddsRules() throws {
        let dir = try profileDirectory([
            "base.json": minimalProfile(),
            "c.json": "{\"extends\": \"base\",\n \"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\"}}",
        ])
        let e = loadError("c", directory: dir)
        #expect(e?.line == 2)
        #expect(e?.message.contains("\"defaultAction\" cannot be changed by a profile that extends \"base\"") == true)
    }

    @Test func baseLessProfileNeedsSeccomp() {
        let e = parseError("{\"name\": \"x\"}")
        #expect(e?.message.contains("missing \"seccomp\"") == true)
        #expect(parseError("{\"seccomp\": {}}")?.message.contains("needs \"defaultAction\"") == true)
    }

    @Test func searchDirectoriesOrder() {
        let dirs = SandboxProfile.searchDirectories(
            executablePath: "/repo/.build/debug/codeinterp", environment: ["CODEINTERP_PROFILES_DIR": "/custom"])
        #expect(dirs == ["/custom", "/repo/sandbox-profiles", "/sandbox-profiles",
                         "/repo/.build/share/codeinterp/sandbox-profiles", "/etc/codeinterp/sandbox-profiles"])
        let installed = SandboxProfile.searchDirectories(executablePath: "/usr/local/bin/codeinterp", environment: [:])
        #expect(installed.first == "/usr/sandbox-profiles")
        #expect(installed.contains("/usr/local/share/codeinterp/sandbox-profiles"))
        #expect(installed.last == "/etc/codeinterp/sandbox-profiles")
    }

    @Test func loadSearchesDirectoriesInOrder() throws {
        let empty = try profileDirectory([:])
        let p = try SandboxProfile.load("default", searching: [empty, shippedProfiles])
        #expect(p.name == "default")
        do {
            _ = try SandboxProfile.load("nothere", searching: [empty])
            Issue.record("expected an error")
        } catch {
            #expect(error.message.contains("no profile named \"nothere\""))
        }
    }
}

/// `preload`: modules the zygote imports once for every execution.
@Suite struct ProfilePreloadTests {
    @Test func preloadIsAListOfModulesAndAddsToItsBase() throws {
        let dir = try profileDirectory([
            "base.json": minimalProfile(extra: #" "preload": ["ci_demo_pkg", "scipy.stats"],"#),
            "more.json": #"{"extends": "base", "preload": ["scipy.stats", "statsmodels.api"]}"#,
        ])
        #expect(try SandboxProfile.load("base", directory: dir).preload == ["ci_demo_pkg", "scipy.stats"])
        #expect(try SandboxProfile.load("more", directory: dir).preload == ["ci_demo_pkg", "scipy.stats", "statsmodels.api"])
        #expect(try SandboxProfile.load("default", directory: shippedProfiles).preload == [])
        #expect(SandboxProfile.available(searching: [dir, dir + "/none"]) == ["base", "more"])
    }

    @Test func aTypoOrAWrongTypeIsALocatedError() {
        let typo = parseError(minimalProfile(extra: #" "prelaod": ["x"],"#))
        #expect(typo?.message.contains("unknown key \"prelaod\"") == true, "\(String(describing: typo))")
        #expect(typo?.message.contains("did you mean \"preload\"?") == true, "\(String(describing: typo))")
        #expect(typo?.line == 2)

        let notAList = parseError(minimalProfile(extra: #" "preload": "numpy","#))
        #expect(notAList?.message.contains("\"preload\" (a list of module names)") == true, "\(String(describing: notAList))")
        let notAString = parseError(minimalProfile(extra: #" "preload": [3],"#))
        #expect(notAString?.message.contains("a module name") == true, "\(String(describing: notAString))")
        let notAModule = parseError(minimalProfile(extra: #" "preload": ["numpy", "os; import x"],"#))
        #expect(notAModule?.message == "\"preload\": \"os; import x\" is not a Python module name (such as \"scipy.stats\")",
                "\(String(describing: notAModule))")
        #expect(notAModule?.column == 37, "\(String(describing: notAModule))")
        let twice = parseError(minimalProfile(extra: #" "preload": ["numpy", "numpy"],"#))
        #expect(twice?.message.contains("listed twice") == true)
        #expect(parseError(minimalProfile(extra: #" "preload": ["1abc"],"#)) != nil)
        #expect(parseError(minimalProfile(extra: #" "preload": ["a..b"],"#)) != nil)
    }
}

import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs the built `codeinterp` binary as a user would.
@Suite("codeinterp CLI", .serialized)
struct CLITests {
    static let root = Subprocess.packageRoot
    static let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent("codeinterp-cli-\(getpid())").path

    /// Runs the built binary with this suite's data directory and profiles.
    func codeinterp(_ args: [String], stdin: String? = nil) throws -> Subprocess.Output {
        var env = ProcessInfo.processInfo.environment
        env["CODEINTERP_DATA_DIR"] = Self.dataDir
        env["CODEINTERP_PROFILES_DIR"] = Self.root.appendingPathComponent("sandbox-profiles").path
        env["CODEINTERP_PRELOAD"] = "numpy,pandas,matplotlib.pyplot"
        return try Subprocess.run([Subprocess.codeinterpBinary()] + args, environment: env, stdin: stdin)
    }

    /// An operator adds a package from a wheel folder (no network); every sandbox imports it, read-only; it is
    /// listed, and removing it takes it away again.
    @Test func aPackageFromAWheelFolderIsImportedInTheSandbox() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("ci-packages-\(getpid())").path
        let data = work + "/data", wheels = work + "/wheels", source = work + "/src"
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: source + "/ci_demo_pkg", withIntermediateDirectories: true)
        try "def hello():\n    return 'hello from a wheel'\n".write(toFile: source + "/ci_demo_pkg/__init__.py", atomically: true, encoding: .utf8)
        try "[project]\nname = \"ci-demo-pkg\"\nversion = \"1.2.3\"\n[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n"
            .write(toFile: source + "/pyproject.toml", atomically: true, encoding: .utf8)
        let wheel = try Subprocess.run(["/usr/bin/python3", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                                        "-w", wheels, source])
        #expect(wheel.status == 0, "\(wheel.stderr)")

        func cli(_ args: [String]) throws -> Subprocess.Output { try codeinterp(args + ["--data-dir", data]) }
        let installed = try cli(["packages", "install", "ci-demo-pkg", "--find-links", wheels])
        #expect(installed.status == 0, "\(installed.stderr)")
        #expect(installed.stdout.contains("ci-demo-pkg==1.2.3"))
        let listed = try cli(["packages", "list"]).stdout
        #expect(listed.contains("demo") && listed.contains("1.2.3"), "\(listed)")

        let run = try cli(["run", "--standalone", "-c", """
            import ci_demo_pkg
            try:
                open(ci_demo_pkg.__file__, "a")
                writable = True
            except OSError:
                writable = False
            (ci_demo_pkg.hello(), writable)
            """])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout == "('hello from a wheel', False)\n")

        let removed = try cli(["packages", "remove", "ci-demo-pkg"])
        #expect(removed.status == 0, "\(removed.stderr)")
        let gone = try cli(["run", "--standalone", "-c", "import ci_demo_pkg"])
        #expect(gone.status == 1 && gone.stderr.contains("ModuleNotFoundError"))
        try? FileManager.default.removeItem(atPath: work)
    }

    @Test func stdinValueIsPrinted() throws {
        let r = try codeinterp(["run", "-"], stdin: "import numpy as np; np.arange(5).sum()")
        #expect(r.status == 0)
        #expect(r.stdout == "10\n")
    }

    @Test func jsonResultOfABlockedConnection() throws {
        let r = try codeinterp(["run", "-c", "import socket; socket.create_connection((\"127.0.0.1\", 22))", "--json"])
        #expect(r.status == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(object["status"] as? String == "error")
        #expect((object["error"] as? [String: Any])?["name"] as? String == "PermissionError")
        #expect(object.keys.contains("session_id") && object.keys.contains("usage") && object.keys.contains("truncated"))
    }

    @Test func chartExampleIsCopiedToOut() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("codeinterp-out-\(getpid())").path
        let r = try codeinterp(["run", Self.root.appendingPathComponent("examples/chart.py").path, "--out", out])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("best month:"))
        #expect(r.stdout.contains("/mnt/data/chart.png"))
        let png = try Data(contentsOf: URL(fileURLWithPath: out + "/chart.png"))
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]))
    }

    @Test func tracebackAndNonZeroExit() throws {
        let r = try codeinterp(["run", "-c", "x = {}\nx['missing']"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("KeyError"))
        #expect(r.stderr.contains("x['missing']"))
    }

    @Test func timeoutOption() throws {
        let r = try codeinterp(["run", "-c", "while True: pass", "--timeout", "1"])
        #expect(r.status == 3)
        #expect(r.stderr.contains("timeout"))
    }

    @Test func networkFlagIsRefusedByTheDefaultProfile() throws {
        let r = try codeinterp(["run", "-c", "1", "--network"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("does not allow network"))
    }

    @Test func profileWithATypoIsReportedWithItsLine() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("typo-\(getpid()).json").path
        try "{\n  \"extends\": \"default\",\n  \"netwrok\": true\n}\n".write(toFile: path, atomically: true, encoding: .utf8)
        let r = try codeinterp(["profile", "validate", path])
        #expect(r.status == 1)
        #expect(r.stderr.contains(":3:"))
        #expect(r.stderr.contains("network"))
        let ok = try codeinterp(["profile", "validate", "default"])
        #expect(ok.status == 0, "\(ok.stderr)")
    }

    @Test func badArgumentsAreExplained() throws {
        let r = try codeinterp(["run"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("-c CODE"))
        let m = try codeinterp(["run", "-c", "1", "--memory", "lots"])
        #expect(m.status != 0)
        #expect(m.stderr.contains("--memory"))
    }

    @Test func doctorReportsIsolation() throws {
        let r = try codeinterp(["doctor"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("pid namespace"))
        #expect(r.stdout.contains("probe execution   ok"))
        // The sandbox finds an empty file where the host keeps its password hashes: doctor says it is masked.
        let shadow = try #require(r.stdout.split(separator: "\n").first { $0.contains("/etc/shadow ") }, "\(r.stdout)")
        #expect(shadow.contains("masked: the sandbox sees an empty file in place of the host's"), "\(shadow)")
        #expect(!r.stdout.contains("READABLE"))
    }

    @Test func exitCodesAreInTheHelp() throws {
        let help = try codeinterp(["--help"])
        #expect(help.status == 0)
        for line in ["0   success", "1   run: the code raised", "2   the sandbox could not run the code",
                     "3   run: a limit stopped the code", "64  usage error"] {
            #expect(help.stdout.contains(line), "\(line) in \(help.stdout)")
        }
        let usage = try codeinterp(["run", "-c", "1", "--no-such-option"])
        #expect(usage.status == 64)
        #expect(usage.stderr.contains("--no-such-option"))
        #expect(try codeinterp(["run", "--help"]).stdout.contains("64 for a usage error"))
    }

    /// On a terminal, what the code wrote to stderr and its exception stand out from its output; piped, or
    /// with NO_COLOR set, everything is plain text.
    @Test func coloursOnATerminalOnly() throws {
        let code = "import sys\nprint('plain output')\nprint('a warning', file=sys.stderr)\n1 / 0"
        var env = ProcessInfo.processInfo.environment
        env["CODEINTERP_DATA_DIR"] = Self.dataDir
        env["CODEINTERP_PROFILES_DIR"] = Self.root.appendingPathComponent("sandbox-profiles").path
        env["CODEINTERP_PRELOAD"] = "numpy"
        env["TERM"] = "xterm-256color"
        env["NO_COLOR"] = nil
        let escape = "\u{1B}["

        let coloured = try Subprocess.runOnTerminal([Subprocess.codeinterpBinary(), "run", "-c", code], environment: env)
        #expect(coloured.status == 1)
        #expect(coloured.text.contains("plain output\r\n") && !coloured.text.contains("mplain output"), "\(coloured.text)")
        #expect(coloured.text.contains(escape + "31ma warning" + escape + "0m"), "\(coloured.text)")
        #expect(coloured.text.contains(escape + "1;31mZeroDivisionError: division by zero" + escape + "0m"), "\(coloured.text)")

        env["NO_COLOR"] = "1"
        let noColour = try Subprocess.runOnTerminal([Subprocess.codeinterpBinary(), "run", "-c", code], environment: env)
        #expect(noColour.status == 1)
        #expect(noColour.text.contains("a warning") && !noColour.text.contains(escape), "\(noColour.text)")

        let piped = try codeinterp(["run", "-c", code])
        #expect(piped.stderr.contains("ZeroDivisionError") && !piped.stderr.contains(escape) && !piped.stdout.contains(escape))
    }
}

import ArgumentParser
import FileStore
import Foundation
import Sandbox
import Server

/// `codeinterp packages install|list|remove`: Python packages for every sandbox, beyond the Debian ones.
struct PackagesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "packages",
        abstract: "Add Python packages every sandbox can import (read-only), beside the system's.",
        discussion: """
            Packages are installed with pip (from PyPI, or with --find-links only from a folder of wheels, offline) \
            into DATA/packages/site and recorded with their versions in DATA/packages/packages.json. Engines started \
            afterwards import them (a new `codeinterp run`), and a `codeinterp serve` of the data directory replaces \
            its worker within seconds: executions running then finish, later ones see the change. A package cannot \
            replace one the system ships (numpy, pandas, ...). A profile's "preload" list imports them in the zygote.
            """,
        subcommands: [Install.self, List.self, Remove.self])

    struct Location: ParsableArguments {
        @Option(name: .customLong("data-dir"), help: "The data directory (default as for serve and run).")
        var dataDirectory: String?

        var packages: PythonPackages { PythonPackages(dataDirectory: Self.directory(dataDirectory)) }

        static func directory(_ given: String?) -> String {
            given ?? FileStore.defaultDirectory(environment: ProcessInfo.processInfo.environment)
        }

        /// What happens next, said after a change.
        static func serverNote(_ given: String?) -> String {
            LocalSocket.isLive(LocalSocket.path(dataDirectory: directory(given)))
                ? "the running server replaces its worker with them within seconds (executions running now finish first)"
                : "engines started from now on import them (a server of this data directory picks them up by itself)"
        }
    }

    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Install packages (pip requirements: NAME or NAME==VERSION).")
        @Argument(help: "Requirements, as pip takes them.") var requirements: [String]
        @Option(name: .customLong("find-links"), help: "A folder of wheels to install from, without PyPI (repeatable).")
        var findLinks: [String] = []
        @OptionGroup var location: Location

        func run() async throws {
            let manifest = try perform { try location.packages.install(requirements, findLinks: findLinks) }
            print("installed: " + manifest.requested.joined(separator: ", "))
            print(Location.serverNote(location.dataDirectory))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the added packages and their versions.")
        @Flag(help: "The manifest as JSON.") var json = false
        @OptionGroup var location: Location

        func run() async throws {
            let manifest = location.packages.manifest()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(manifest), as: UTF8.self))
                return
            }
            if manifest.installed.isEmpty { print("no packages added (codeinterp packages install NAME)"); return }
            for (name, version) in manifest.installed.sorted(by: { $0.key.lowercased() < $1.key.lowercased() }) {
                print("\(name) \(version)")
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove packages (and what only they needed).")
        @Argument(help: "Package names.") var names: [String]
        @OptionGroup var location: Location

        func run() async throws {
            let manifest = try perform { try location.packages.remove(names) }
            print("left: " + (manifest.requested.isEmpty ? "none" : manifest.requested.joined(separator: ", ")))
            print(Location.serverNote(location.dataDirectory))
        }
    }
}

private func perform<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as PythonPackages.Failure {
        FileHandle.standardError.write(Data("codeinterp: \(error)\n".utf8))
        throw ExitCode(2)
    }
}

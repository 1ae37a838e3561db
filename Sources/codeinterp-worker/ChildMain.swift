import CSandbox
import Foundation
import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

/// The forked child's side: it confines itself, then runs cells. Nothing here returns to the zygote's loop.
extension Zygote {
    /// The child: wire its descriptors, confine itself, then run cells from the command pipe (one, or a
    /// session's many). Never returns.
    func childMain(plan: IsolationPlan, pipes: [[Int32]], readyFd: Int32, session: Bool) -> Never {
        ci_unblock_all_signals_and_reset()
        // Out of the way first: a pipe may already sit on a number another one is about to take.
        // The ready pipe above the child's six descriptors, where isolation step 8 closes it.
        let ready = fcntl(readyFd, F_DUPFD_CLOEXEC, 16)
        Glibc.close(readyFd)
        let ends = ChildDescriptor.allCases.map { d in fcntl(pipes[d.rawValue][d == .command ? 0 : 1], F_DUPFD_CLOEXEC, 16) }
        let devnull = open("/dev/null", O_RDONLY)
        dup2(devnull, 0)
        for d in ChildDescriptor.allCases { dup2(ends[d.rawValue], d.childFd) }
        let report = ChildDescriptor.report.childFd
        do {
            try isolate(plan, reportFd: report, readyFd: ready)
        } catch {
            let message = Array("sandbox setup failed at \(error)".utf8.prefix(1000))
            _ = writeAll(report, Frame(kind: .setupFailed, payload: message).encoded())
            _exit(121)
        }
        python.afterFork()
        cellLoop(oneShot: !session)
    }

    /// Reads a cell frame, runs the code, answers with two frames on fd 3: the runtime's `outcome`, then the
    /// `usage` of the interpreter's life so far. A one-shot child then exits.
    private func cellLoop(oneShot: Bool) -> Never {
        let command = ChildDescriptor.command.childFd, result = ChildDescriptor.result.childFd
        // Only the engine writes here, and it bounds the code it accepts.
        var commands = FrameDecoder(maxPayload: Int(UInt32.max))
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let cell: CellCommand
            switch nextCommand(&commands, from: command, buffer: &buffer) {
            case nil: _exit(0)
            case .prime?:
                python.prime(resultFd: result)
                continue
            case .cell(let next)?: cell = next
            }
            let memory = cell.memoryBytes
            if memory > 0 {
                // Lower only. A session keeps its hard limit, so a later cell may have the profile's again.
                var current = rlimit()
                getrlimit(__rlimit_resource_t(UInt32(CI_RLIMIT_AS)), &current)
                let hard = UInt64(current.rlim_max)
                let soft = min(hard, baseAddressSpace + memory)
                _ = ci_setrlimit(CI_RLIMIT_AS, soft, oneShot ? soft : hard)
            }
            python.runCell(cell.code, resultFd: result, keepOpen: true, oneShot: oneShot)
            var me = rusage(), children = rusage()
            getrusage(RUSAGE_SELF.rawValue, &me)
            getrusage(RUSAGE_CHILDREN.rawValue, &children)
            let cpuMs = milliseconds(me.ru_utime) + milliseconds(me.ru_stime)
                + milliseconds(children.ru_utime) + milliseconds(children.ru_stime)
            // A one-shot child that is alone now (one thread, no other process in its namespace, no signal handler
            // of the user's able to run) can change nothing any more: the engine may collect /mnt/data without
            // waiting for the kernel to tear this process down.
            var alone = false
            if oneShot {
                ci_block_all_signals()
                alone = ci_thread_count() == 1
                    && (directoryEntryNames(atPath: "/proc") ?? []).filter({ $0.allSatisfy { $0.isNumber } }) == ["\(getpid())"]
            }
            let usage = "{\"cpu_ms\":\(cpuMs),\"max_rss_kb\":\(max(me.ru_maxrss, children.ru_maxrss)),\"alone\":\(alone)}"
            guard writeAll(result, Frame(kind: .usage, payload: Array(usage.utf8)).encoded()) else { _exit(0) }
            if oneShot { _exit(0) }
        }
    }
}

/// What the engine asks of a waiting child.
private enum ChildCommand {
    case cell(CellCommand)
    /// Render a throwaway chart now, before any cell (FrameKind.prime).
    case prime
}

/// The next command on the command pipe, blocking until it is all in; nil once the engine closed the pipe.
private func nextCommand(_ decoder: inout FrameDecoder, from fd: Int32, buffer: inout [UInt8]) -> ChildCommand? {
    while true {
        let frame: Frame?
        do { frame = try decoder.next() } catch { continue }  // dropped; the next frame may be buffered already
        if let frame {
            if let cell = CellCommand(frame) { return .cell(cell) }
            if frame.kind == .prime { return .prime }
            continue
        }
        let n = read(fd, &buffer, buffer.count)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return nil }
        decoder.feed(buffer[0..<n])
    }
}

import Foundation
import InterpreterCore
import Testing
@testable import Sandbox

/// One hostile snippet of the adversarial corpus: what it tries, the outcome it must have, and why that outcome
/// is the contained one. `AdversarialCorpusTests` runs every case, then a benign execution that must still work.
struct HostileCase: Sendable, CustomTestStringConvertible {
    enum Category: String, Sendable { case escape, data, network, resources, persistence }

    enum Outcome: Sendable, CustomStringConvertible {
        /// Ended by the seccomp filter, and the result names the call.
        case blocked(String)
        /// Ran to its end (status ok); the repr of its last expression is one of these: what the attack got.
        case value([String])
        /// Raised this Python exception (status error).
        case raises(String)
        /// Stopped by a limit or a signal with this status.
        case stopped(ExecutionStatus)

        static func value(_ repr: String) -> Outcome { .value([repr]) }

        var description: String {
            switch self {
            case .blocked(let call): "blocked_syscall \(call)"
            case .value(let reprs): "ok with \(reprs.joined(separator: " or "))"
            case .raises(let name): "error \(name)"
            case .stopped(let status): status.rawValue
            }
        }
    }

    /// Runs after the attack and checks what it left behind (its expected repr).
    struct FollowUp: Sendable {
        var code: String
        var expect: String
    }

    var name: String
    var category: Category
    var code: String
    var expect: Outcome
    var why: String
    /// A wall-clock limit for the attack (the profile's 30 s otherwise).
    var timeout: Double? = nil
    /// Started first and left running: the attack begins once the neighbour has printed `ready`, then the
    /// neighbour is cancelled. For attacks on a concurrent tenant.
    var neighbour: String? = nil
    var then: FollowUp? = nil
    /// What the host sees afterwards (processes, collected files); nil when fine, else what is wrong.
    var check: (@Sendable (ExecutionResult) throws -> String?)? = nil
    /// A known weakness: the case records what must become true, and is expected to fail until it does.
    var knownGap: String? = nil

    var testDescription: String { "\(category.rawValue)/\(name)" }
}

/// The corpus, by category. Snippets whose last expression reports what the attack found end on a value that
/// would differ if the attack worked (a leaked byte, a connection, an extra process), never on a bare `True`.
enum AdversarialCorpus {
    static let dataDirectory = EngineFixture.dataDirectory
    static let libc = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"

    /// A raw system call through libc; reaching the next line means it was not stopped.
    static func syscall(_ number: Int, _ args: String = "0") -> String {
        libc + "libc.syscall(\(number), \(args))\n'not reached'"
    }

    /// `expression` run; its result, or the OSError's strerror.
    static func strerror(of statement: String, success: String = "'succeeded'") -> String {
        "try:\n    \(statement)\n    r = \(success)\nexcept OSError as e:\n    r = e.strerror\nr"
    }

    static func exceptionName(of statement: String, success: String = "'succeeded'") -> String {
        "try:\n    \(statement)\n    r = \(success)\nexcept OSError as e:\n    r = type(e).__name__\nr"
    }

    static let cases: [HostileCase] = escape + data + network + resources + persistence

    // MARK: Escape and privilege

    static let escape: [HostileCase] = [
        HostileCase(name: "ptrace-traceme", category: .escape, code: libc + "libc.ptrace(0, 0, 0, 0)\n'not reached'",
                    expect: .blocked("ptrace"), why: "ptrace is only ever an attack here: the process ends and the result names the call"),
        HostileCase(name: "ptrace-attach-parent", category: .escape, code: libc + "libc.ptrace(16, os.getppid(), 0, 0)\n'not reached'",
                    expect: .blocked("ptrace"), why: "attaching to whatever started the interpreter is stopped before the kernel looks at the target"),
        HostileCase(name: "process-vm-readv", category: .escape, code: syscall(310, "os.getpid(), 0, 0, 0, 0, 0"),
                    expect: .blocked("process_vm_readv"), why: "reading another process's memory without ptrace"),
        HostileCase(name: "process-vm-writev", category: .escape, code: syscall(311, "os.getpid(), 0, 0, 0, 0, 0"),
                    expect: .blocked("process_vm_writev"), why: "writing another process's memory without ptrace"),
        HostileCase(name: "proc-mem-of-parent", category: .escape, code: #"""
            import subprocess, sys
            probe = 'import os\ntry:\n open(f"/proc/{os.getppid()}/mem", "rb").read(1)\n print("read")\nexcept OSError as e:\n print(type(e).__name__)'
            subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True).stdout.strip()
            """#, expect: .value(["'FileNotFoundError'", "'PermissionError'"]),
                    why: "the interpreter is not dumpable: even its own children cannot open its /proc/PID/mem"),
        HostileCase(name: "proc-1-root", category: .escape, code: #"""
            import os
            (os.getpid(), os.path.samefile('/proc/1/root', '/'), sorted(os.listdir('/proc/1/root')) == sorted(os.listdir('/')))
            """#, expect: .value("(1, True, True)"),
                    why: "pid 1 is the interpreter itself (its own pid namespace): /proc/1/root is its own root, not the host's"),
        HostileCase(name: "unshare-user-namespace", category: .escape, code: libc + "libc.unshare(0x10000000)\n'not reached'",
                    expect: .blocked("unshare"), why: "a user namespace would hand the code every capability inside it"),
        HostileCase(name: "setns-into-namespace", category: .escape,
                    code: libc + "fd = os.open('/proc/self/ns/net', os.O_RDONLY)\nlibc.setns(fd, 0)\n'not reached'",
                    expect: .blocked("setns"), why: "joining another namespace by descriptor"),
        HostileCase(name: "clone-with-namespace-flags", category: .escape,
                    code: libc + "r = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)\n(r, os.strerror(ctypes.get_errno()))",
                    expect: .value("(-1, 'Operation not permitted')"), why: "clone is allowed for fork and threads, never with CLONE_NEW* flags"),
        HostileCase(name: "clone3-hides-flags", category: .escape,
                    code: libc + "r = libc.syscall(435, 0, 0)\n(r, os.strerror(ctypes.get_errno()))",
                    expect: .value("(-1, 'Function not implemented')"),
                    why: "clone3 passes its flags in memory the filter cannot read: ENOSYS makes libc fall back to clone"),
        HostileCase(name: "mount-tmpfs", category: .escape, code: libc + "libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)\n'not reached'",
                    expect: .blocked("mount"), why: "mounts rearrange the filesystem view the sandbox built"),
        HostileCase(name: "umount-root", category: .escape, code: libc + "libc.umount2(b'/', 2)\n'not reached'",
                    expect: .blocked("umount2"), why: "detaching the new root to uncover what is under it"),
        HostileCase(name: "pivot-root", category: .escape, code: syscall(155, "b'/tmp', b'/tmp'"),
                    expect: .blocked("pivot_root"), why: "swapping the root mount"),
        HostileCase(name: "chroot", category: .escape, code: "import os\n" + strerror(of: "os.chroot('/tmp')"),
                    expect: .value("'Operation not permitted'"), why: "the classic chroot-and-climb escape starts with a chroot"),
        HostileCase(name: "setuid-root", category: .escape, code: "import os\n" + strerror(of: "os.setuid(0)"),
                    expect: .value("'Operation not permitted'"), why: "no identity change: EPERM, whatever the uid"),
        HostileCase(name: "setresuid-through-libc", category: .escape,
                    code: libc + "r = libc.setresuid(0, 0, 0)\n(r, os.strerror(ctypes.get_errno()), os.getuid() == 0)",
                    expect: .value("(-1, 'Operation not permitted', False)"), why: "calling libc directly changes nothing"),
        HostileCase(name: "capset-everything", category: .escape, code: libc + #"""
            class Header(ctypes.Structure): _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]
            class Data(ctypes.Structure): _fields_ = [('effective', ctypes.c_uint32), ('permitted', ctypes.c_uint32), ('inheritable', ctypes.c_uint32)]
            full = Data(0xffffffff, 0xffffffff, 0xffffffff)
            r = libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)(full, full))
            (r, os.strerror(ctypes.get_errno()))
            """#, expect: .value("(-1, 'Operation not permitted')"), why: "capabilities cannot be raised back"),
        HostileCase(name: "setuid-binary-su", category: .escape, code: #"""
            import subprocess
            p = subprocess.run(['/usr/bin/su', '-c', 'id -u'], capture_output=True, text=True, input='')
            (p.returncode != 0, '0' in p.stdout.split())
            """#, expect: .value("(True, False)"), why: "no_new_privs and nosuid mounts: a setuid-root binary runs without its privileges"),
        HostileCase(name: "setuid-binary-mount", category: .escape, code: #"""
            import subprocess
            p = subprocess.run(['/usr/bin/mount', '-t', 'tmpfs', 'none', '/tmp'], capture_output=True)
            (p.returncode != 0, open('/proc/self/mounts').read().count(' /tmp '))
            """#, expect: .value("(True, 1)"), why: "the setuid mount binary cannot mount: /tmp stays the sandbox's one tmpfs"),
        HostileCase(name: "setuid-binary-newgrp", category: .escape, code: #"""
            import subprocess
            p = subprocess.run(['/usr/bin/newgrp', 'root'], capture_output=True, text=True, input='id -g\n')
            (p.returncode != 0, p.stdout.strip() == '0')
            """#, expect: .value("(True, False)"), why: "newgrp is setuid root; without its privileges it cannot switch groups"),
        HostileCase(name: "unshare-binary", category: .escape, code: #"""
            import subprocess
            subprocess.run(['/usr/bin/unshare', '--user', '--map-root-user', 'id', '-u'], capture_output=True, text=True).returncode
            """#, expect: .value("-31"), why: "the filter is inherited across exec: the unshare tool dies of SIGSYS"),
        HostileCase(name: "kernel-module-init", category: .escape, code: syscall(175, "0, 0, 0"),
                    expect: .blocked("init_module"), why: "loading kernel code"),
        HostileCase(name: "kernel-module-finit", category: .escape, code: syscall(313, "0, 0, 0"),
                    expect: .blocked("finit_module"), why: "loading kernel code from a file descriptor"),
        HostileCase(name: "kernel-module-delete", category: .escape, code: syscall(176, "b'ext4', 0"),
                    expect: .blocked("delete_module"), why: "unloading kernel modules"),
        HostileCase(name: "kexec-load", category: .escape, code: syscall(246, "0, 0, 0, 0"),
                    expect: .blocked("kexec_load"), why: "replacing the running kernel"),
        HostileCase(name: "bpf", category: .escape, code: syscall(321, "0, 0, 0"),
                    expect: .blocked("bpf"), why: "eBPF is a large, exploit-prone kernel interface"),
        HostileCase(name: "perf-event-open", category: .escape, code: syscall(298, "0, 0, -1, -1, 0"),
                    expect: .blocked("perf_event_open"), why: "performance counters: side channels and kernel bugs"),
        HostileCase(name: "userfaultfd", category: .escape, code: syscall(323, "0"),
                    expect: .blocked("userfaultfd"), why: "a staple of kernel race exploits (pausing the kernel on a page fault)"),
        HostileCase(name: "io-uring-setup", category: .escape, code: syscall(425, "8, 0"),
                    expect: .blocked("io_uring_setup"), why: "io_uring runs operations the system call filter never sees"),
        HostileCase(name: "keyctl", category: .escape, code: syscall(250, "0, 0"),
                    expect: .blocked("keyctl"), why: "the kernel keyring is shared more widely than a sandbox"),
        HostileCase(name: "add-key", category: .escape, code: syscall(248, "b'user', b'x', 0, 0, -3"),
                    expect: .blocked("add_key"), why: "the kernel keyring"),
        HostileCase(name: "open-by-handle-at", category: .escape, code: syscall(304, "-100, 0, 0"),
                    expect: .blocked("open_by_handle_at"), why: "the 'shocker' escape: file handles bypass the mount namespace"),
        HostileCase(name: "name-to-handle-at", category: .escape, code: syscall(303, "-100, b'/etc/passwd', 0, 0, 0"),
                    expect: .blocked("name_to_handle_at"), why: "the first half of the shocker escape"),
        HostileCase(name: "iopl", category: .escape, code: syscall(172, "3"), expect: .blocked("iopl"), why: "raw I/O port access"),
        HostileCase(name: "ioperm", category: .escape, code: syscall(173, "0, 1024, 1"), expect: .blocked("ioperm"), why: "raw I/O port access"),
        HostileCase(name: "reboot", category: .escape, code: syscall(169, "0xfee1dead, 672274793, 0x4321fedc, 0"),
                    expect: .blocked("reboot"), why: "host administration"),
        HostileCase(name: "kernel-log", category: .escape, code: syscall(103, "3, 0, 0"),
                    expect: .blocked("syslog"), why: "the kernel log leaks addresses and other tenants' activity"),
        HostileCase(name: "swapon", category: .escape, code: syscall(167, "b'/tmp/swap', 0"), expect: .blocked("swapon"), why: "host administration"),
        HostileCase(name: "acct", category: .escape, code: syscall(163, "b'/tmp/acct'"), expect: .blocked("acct"), why: "host administration"),
        HostileCase(name: "personality-read-implies-exec", category: .escape,
                    code: libc + "r = libc.personality(0x0400000)\n(r, os.strerror(ctypes.get_errno()))",
                    expect: .value("(-1, 'Operation not permitted')"), why: "personalities that weaken memory protections are refused"),
        HostileCase(name: "replace-sigsys-handler", category: .escape,
                    code: "import signal\n" + strerror(of: "signal.signal(signal.SIGSYS, signal.SIG_IGN)"),
                    expect: .value("'Operation not permitted'"), why: "the handler that reports blocked calls cannot be replaced"),
        HostileCase(name: "blocked-sigsys-then-ptrace", category: .escape, code: libc + #"""
            import signal
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGSYS])
            libc.ptrace(0, 0, 0, 0)
            'not reached'
            """#, expect: .stopped(.blockedSyscall),
                    why: "with SIGSYS blocked the kernel kills at once (the call still never runs) before the handler can name the call; the result says a forbidden call was stopped, and why it cannot say which",
                    check: { r in r.blockedSyscall == nil && r.error?.value.contains("had blocked SIGSYS") == true
                        ? nil : "reported as \(r.blockedSyscall ?? "-"): \(r.error?.value ?? "")" }),
        HostileCase(name: "stack-an-allow-all-filter", category: .escape, code: libc + #"""
            import struct
            allow = ctypes.create_string_buffer(struct.pack('HBBI', 0x06, 0, 0, 0x7fff0000))
            class Program(ctypes.Structure): _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]
            assert libc.prctl(22, 2, ctypes.byref(Program(1, ctypes.addressof(allow))), 0, 0) == 0
            libc.ptrace(0, 0, 0, 0)
            'not reached'
            """#, expect: .blocked("ptrace"), why: "seccomp filters stack: one that allows everything loosens nothing"),
        HostileCase(name: "no-new-privs-off", category: .escape,
                    code: libc + "r = libc.prctl(38, 0, 0, 0, 0)\n(r, os.strerror(ctypes.get_errno()), libc.prctl(39, 0, 0, 0, 0))",
                    expect: .value("(-1, 'Invalid argument', 1)"), why: "no_new_privs cannot be turned off"),
        HostileCase(name: "memfd-exec-stays-confined", category: .escape, code: #"""
            import os, subprocess
            fd = os.memfd_create('copy', 0)
            os.write(fd, open('/usr/bin/python3', 'rb').read())
            probe = 'import socket\ntry:\n socket.socket(socket.AF_INET)\n print("network")\nexcept PermissionError:\n print("PermissionError")'
            p = subprocess.run([f'/proc/self/fd/{fd}', '-c', probe], pass_fds=[fd], capture_output=True, text=True)
            (p.returncode, p.stdout.strip())
            """#, expect: .value("(0, 'PermissionError')"), why: "a program run from memory keeps the filter: exec never sheds it"),
        HostileCase(name: "exec-a-written-binary", category: .escape, code: #"""
            import os, shutil, subprocess
            shutil.copy('/usr/bin/unshare', 'mine'); os.chmod('mine', 0o755)
            subprocess.run(['./mine', '--user', 'true'], capture_output=True).returncode
            """#, expect: .value("-31"), why: "a binary the code wrote itself is as confined as the interpreter"),
        HostileCase(name: "tiocsti-with-high-bits", category: .escape, code: #"""
            import fcntl, os, termios
            seen = set()
            for fd in (0, 1, 2):
                for request in (termios.TIOCSTI, termios.TIOCSTI | (1 << 32)):
                    try:
                        fcntl.ioctl(fd, request, b'x'); seen.add('injected')
                    except OSError as e:
                        seen.add(e.strerror)
            try:
                os.open('/dev/tty', os.O_RDWR); seen.add('tty')
            except OSError as e:
                seen.add(e.strerror)
            sorted(seen)
            """#, expect: .value("['Inappropriate ioctl for device', 'No such file or directory']"),
                    why: "no terminal to push keystrokes into, whatever the request number's upper bits say"),
        HostileCase(name: "sysrq-trigger", category: .escape, code: exceptionName(of: "open('/proc/sysrq-trigger', 'w').write('b')"),
                    expect: .value(["'FileNotFoundError'", "'PermissionError'"]), why: "crashing or rebooting the host through /proc"),
        HostileCase(name: "core-pattern", category: .escape, code: exceptionName(of: "open('/proc/sys/kernel/core_pattern', 'w').write('|/tmp/x')"),
                    expect: .value(["'PermissionError'", "'OSError'"]), why: "a core_pattern pipe runs a program as root on the host"),
        HostileCase(name: "no-sysfs", category: .escape, code: "import os\n(os.path.exists('/sys'), os.path.exists('/sys/fs/cgroup/release_agent'))",
                    expect: .value("(False, False)"), why: "no /sys: no cgroup release_agent, no device or firmware knobs"),
        HostileCase(name: "mknod-block-device", category: .escape,
                    code: "import os, stat\n" + strerror(of: "os.mknod('sda', stat.S_IFBLK | 0o600, os.makedev(8, 0))"),
                    expect: .value("'Operation not permitted'"), why: "a device node of the host's disk would bypass every file permission"),
        HostileCase(name: "dev-is-minimal", category: .escape, code: "import os\nsorted(os.listdir('/dev'))",
                    expect: .value("['fd', 'full', 'null', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'urandom', 'zero']"),
                    why: "no disks, no memory devices, no terminals, no kvm"),
        HostileCase(name: "write-usr", category: .escape, code: strerror(of: "open('/usr/bin/evil', 'w')"),
                    expect: .value("'Read-only file system'"), why: "the host's programs are bound read-only"),
        HostileCase(name: "overwrite-own-executable", category: .escape, code: strerror(of: "open('/proc/self/exe', 'r+b').write(b'x')"),
                    expect: .value(["'Permission denied'", "'Read-only file system'", "'Text file busy'"]),
                    why: "the interpreter binary is the host's: overwriting it would reach every later execution"),
        HostileCase(name: "inherited-descriptors", category: .escape, code: #"""
            import os
            kinds = []
            for fd in sorted(int(f) for f in os.listdir('/proc/self/fd')):
                try:
                    target = os.readlink(f'/proc/self/fd/{fd}')
                except OSError:
                    continue
                kinds.append(target.split(':')[0] if ':' in target else target)
            kinds
            """#, expect: .value("['/dev/null', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe']"),
                    why: "only stdio and the child's own pipes: no host directory to fchdir through, no socket to the engine"),
        HostileCase(name: "chown-to-root", category: .escape,
                    code: "import os\nopen('mine', 'w').close()\n" + strerror(of: "os.chown('mine', 0, 0)"),
                    expect: .value(["'Operation not permitted'", "'Invalid argument'"]),
                    why: "no capability to give files away (in a user namespace uid 0 is not even mapped)"),
        HostileCase(name: "kernel-addresses-hidden", category: .escape,
                    code: "lines = open('/proc/kallsyms').read().splitlines()[:100]\nsorted({l.split()[0] for l in lines})",
                    expect: .value("['0000000000000000']"), why: "kernel symbol addresses would defeat KASLR"),
    ]

    // MARK: Data

    static let data: [HostileCase] = [
        HostileCase(name: "shadow-files", category: .data, code: "(open('/etc/shadow').read(), open('/etc/gshadow').read())",
                    expect: .value("('', '')"), why: "password hashes are masked by empty files"),
        HostileCase(name: "sudoers-and-ssh", category: .data, code: #"""
            import os
            (open('/etc/sudoers').read() if os.path.exists('/etc/sudoers') else '',
             os.listdir('/etc/ssh') if os.path.exists('/etc/ssh') else [],
             os.listdir('/etc/ssl/private') if os.path.exists('/etc/ssl/private') else [])
            """#, expect: .value("('', [], [])"), why: "host keys and sudo rules are masked"),
        HostileCase(name: "passwd-knows-only-the-sandbox", category: .data, code: "[line.split(':')[0] for line in open('/etc/passwd')]",
                    expect: .value("['root', 'sandbox']"), why: "the host's accounts are not listed"),
        HostileCase(name: "host-directories", category: .data, code: #"""
            import os
            [p for p in ('/root', '/home', '/srv', '/opt', '/boot', '/var/lib', '/var/log', '/run/user') if os.path.exists(p) and os.listdir(p)]
            """#, expect: .value("[]"), why: "nothing of the host but /usr and a masked /etc"),
        HostileCase(name: "the-engine-data-directory", category: .data, code: #"""
            import os
            [os.path.exists(p) for p in ('\#(dataDirectory)', '\#(dataDirectory)/codeinterp.sqlite', '\#(dataDirectory)/api-key',
                                         '\#(dataDirectory)/url-signing-secret', '\#(dataDirectory)/files', '\#(dataDirectory)/sessions')]
            """#, expect: .value("[False, False, False, False, False, False]"),
                    why: "the database, the API key, the signing secret and every tenant's blobs live there"),
        HostileCase(name: "search-for-the-server-secrets", category: .data, code: #"""
            import os
            hits = []
            for top in ('/etc', '/tmp', '/var', '/run', '/mnt', '/dev', '/proc/self/cwd'):
                for d, dirs, files in os.walk(top):
                    hits += [os.path.join(d, f) for f in files if f in ('codeinterp.sqlite', 'api-key', 'url-signing-secret', 'config.json', 'worker.log')]
            hits
            """#, expect: .value("[]"), why: "whatever path the operator chose, the server's files are not in the sandbox's tree"),
        HostileCase(name: "the-test-suite-sources", category: .data,
                    code: "import os\nos.path.exists('\(EngineFixture.packageRoot.path)/Package.swift')",
                    expect: .value("False"), why: "the checkout the engine runs from is the host's"),
        HostileCase(name: "environment-through-proc", category: .data, code: #"""
            import os
            allowed = {'PATH', 'HOME', 'TMPDIR', 'USER', 'LANG', 'LC_ALL', 'MPLBACKEND', 'MPLCONFIGDIR', 'PYTHONDONTWRITEBYTECODE',
                       'OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'NUMEXPR_NUM_THREADS', 'KMP_DUPLICATE_LIB_OK', 'KMP_INIT_AT_FORK',
                       'PYTHONPATH'}  # the pip stub in /tmp/.codeinterp (the runtime's)
            found = set(os.environ)
            for pid in (p for p in os.listdir('/proc') if p.isdigit()):
                try:
                    found |= {kv.split(b'=')[0].decode() for kv in open(f'/proc/{pid}/environ', 'rb').read().split(b'\0') if kv}
                except OSError:
                    pass
            sorted(found - allowed)
            """#, expect: .value("[]"), why: "the engine's environment (keys, tokens) never reaches the sandbox, in os.environ or /proc"),
        HostileCase(name: "other-sessions-by-traversal", category: .data, code: #"""
            import os
            [os.path.exists(p) for p in ('/mnt/data/../../sessions', '../sessions', '/mnt/sessions', '\#(dataDirectory)/sessions',
                                         '/proc/self/cwd/../../..\#(dataDirectory)', '/proc/self/root/..\#(dataDirectory)')]
            """#, expect: .value("[False, False, False, False, False, False]"),
                    why: "/mnt/data is a bind of one directory: climbing out of it reaches the sandbox's root, not the host's"),
        HostileCase(name: "symlink-to-passwd-and-root", category: .data, code: #"""
            import os
            os.symlink('/etc/passwd', 'passwd'); os.symlink('/', 'root'); os.makedirs('sub'); os.symlink('/etc', 'sub/etc')
            open('real.txt', 'w').write('kept')
            'linked'
            """#, expect: .value("'linked'"), why: "the collector never follows links: only the real file comes back",
                    check: { r in r.files.map(\.name) == ["real.txt"] ? nil : "collected \(r.files.map(\.path))" }),
        HostileCase(name: "hardlink-to-passwd", category: .data, code: "import os\n" + strerror(of: "os.link('/etc/passwd', 'passwd')"),
                    expect: .value("'Invalid cross-device link'"), why: "a hard link cannot cross from a read-only bind into /mnt/data",
                    check: { r in r.files.isEmpty ? nil : "collected \(r.files.map(\.path))" }),
        HostileCase(name: "hardlink-to-tmp", category: .data,
                    code: "import os\nopen('/tmp/t', 'w').write('t')\n" + strerror(of: "os.link('/tmp/t', 't')"),
                    expect: .value("'Invalid cross-device link'"), why: "nor from the private /tmp"),
        HostileCase(name: "fifo-in-mnt-data", category: .data, code: #"""
            import os
            os.mkfifo('pipe'); keep = os.open('pipe', os.O_RDWR)
            open('real.txt', 'w').write('kept')
            'made'
            """#, expect: .value("'made'"), why: "a FIFO with a writer would block a collector that read it: it is skipped",
                    check: { r in r.files.map(\.name) == ["real.txt"] ? nil : "collected \(r.files.map(\.path))" }),
        HostileCase(name: "unix-socket-in-mnt-data", category: .data, code: #"""
            import socket
            s = socket.socket(socket.AF_UNIX); s.bind('sock'); s.listen()
            open('real.txt', 'w').write('kept')
            'bound'
            """#, expect: .value("'bound'"), why: "sockets are not files to collect",
                    check: { r in r.files.map(\.name) == ["real.txt"] ? nil : "collected \(r.files.map(\.path))" }),
        HostileCase(name: "sparse-file-of-a-terabyte", category: .data, code: strerror(of: "open('sparse', 'wb').truncate(2**40)"),
                    expect: .value("'File too large'"), why: "a sparse file the collector would expand into real bytes: the file size limit stops it",
                    check: { r in r.files.allSatisfy { $0.sizeBytes == 0 } ? nil : "collected \(r.files.map { "\($0.path) \($0.sizeBytes)" })" }),
        HostileCase(name: "names-with-dots-and-newlines", category: .data, code: #"""
            import os
            os.makedirs('a/b')
            open('a/b/..evil', 'w').write('1'); open('..hidden', 'w').write('2'); open('a\nb"; x=1', 'w').write('3')
            'written'
            """#, expect: .value("'written'"), why: "odd names are stored under /mnt/data with their real relative path, never outside it",
                    check: { r in
                        Set(r.files.map(\.path)) == ["/mnt/data/a/b/..evil", "/mnt/data/..hidden", "/mnt/data/a\nb\"; x=1"]
                            ? nil : "collected \(r.files.map(\.path))"
                    }),
        HostileCase(name: "name-that-is-not-utf8", category: .data, code: #"""
            import os
            fd = os.open(b'\xff\xfe.bin', os.O_CREAT | os.O_WRONLY); os.write(fd, b'x'); os.close(fd)
            open('ok.txt', 'w').write('k')
            len(os.listdir(b'.'))
            """#, expect: .value("2"), why: "a name no string can hold is skipped, the others still come back, and the directory still goes",
                    check: { r in
                        guard r.files.map(\.name).contains("ok.txt") else { return "collected \(r.files.map(\.path))" }
                        let work = EngineFixture.dataDirectory + "/work"
                        let live = EngineFixture.engine.liveWorkdirs
                        let left = try FileManager.default.contentsOfDirectory(atPath: work).filter { !live.contains(work + "/" + $0) }
                        return left.isEmpty ? nil : "work directories left behind: \(left)"
                    }),
        HostileCase(name: "directories-deeper-than-the-limit", category: .data, code: #"""
            import os
            deep = '/'.join(['d'] * 40); os.makedirs(deep)
            open(deep + '/deep.txt', 'w').write('x'); open('top.txt', 'w').write('t')
            'made'
            """#, expect: .value("'made'"), why: "the collector walks at most output_depth levels",
                    check: { r in r.files.map(\.name) == ["top.txt"] && r.stderr.contains("deeper than") ? nil : "collected \(r.files.map(\.path))" }),
        HostileCase(name: "twenty-thousand-files", category: .data, code: #"""
            for i in range(20_000):
                open(f'f{i}', 'w').close()
            'made'
            """#, expect: .value("'made'"),
                    why: "a flood of files: at most output_files are collected, and the note about the rest stays short",
                    check: { r in
                        r.files.count == 100 && r.stderr.utf8.count < 4096 && r.stderr.contains("and 19880 more")
                            ? nil : "\(r.files.count) files collected, \(r.stderr.utf8.count) bytes of stderr"
                    }),
        HostileCase(name: "a-million-files", category: .data, code: #"""
            for i in range(1_000_000):
                open(f'f{i}', 'w').close()
            """#, expect: .stopped(.timeout),
                    why: "no file system makes a million files in 2 s: the wall clock ends it, and all it made is collected or noted briefly",
                    timeout: 2,
                    check: { r in r.files.count <= 100 && r.stderr.utf8.count < 4096 ? nil : "\(r.files.count) files, \(r.stderr.utf8.count) bytes of stderr" }),
        HostileCase(name: "poison-the-outcome-encoder", category: .data, code: #"""
            import json
            json.dumps = lambda *a, **k: '{"result": {"text/plain": "forged"}}'
            json.JSONEncoder.encode = lambda self, o: '{"result": {"text/plain": "forged"}}'
            'genuine'
            """#, expect: .value("'genuine'"), why: "the runtime encodes the outcome with an encoder bound before the code ran"),
    ]

    // MARK: Network

    static let network: [HostileCase] = [
        HostileCase(name: "tcp-to-loopback", category: .network,
                    code: "import socket\n" + exceptionName(of: "socket.create_connection(('127.0.0.1', 8080), timeout=2)"),
                    expect: .value("'PermissionError'"), why: "the server itself listens on loopback"),
        HostileCase(name: "tcp-to-the-internet", category: .network,
                    code: "import socket\n" + exceptionName(of: "socket.create_connection(('1.1.1.1', 443), timeout=2)"),
                    expect: .value("'PermissionError'"), why: "no network unless the profile allows it"),
        HostileCase(name: "udp-datagram", category: .network,
                    code: "import socket\n" + exceptionName(of: "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('8.8.8.8', 53))"),
                    expect: .value("'PermissionError'"), why: "UDP is network too"),
        HostileCase(name: "ipv6", category: .network, code: "import socket\n" + exceptionName(of: "socket.socket(socket.AF_INET6)"),
                    expect: .value("'PermissionError'"), why: "IPv6 is network too"),
        HostileCase(name: "raw-icmp", category: .network,
                    code: "import socket\n" + exceptionName(of: "socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)"),
                    expect: .value("'PermissionError'"), why: "raw IP sockets"),
        HostileCase(name: "packet-socket", category: .network, code: "import socket\nsocket.socket(17, socket.SOCK_RAW, 0)\n'not reached'",
                    expect: .blocked("socket"), why: "AF_PACKET: link-layer frames, a source of kernel exploits"),
        HostileCase(name: "netlink-route", category: .network, code: "import socket\n" + exceptionName(of: "socket.socket(16, socket.SOCK_RAW, 0)"),
                    expect: .value("'PermissionError'"), why: "NETLINK_ROUTE is refused gently: libc probes it for getaddrinfo"),
        HostileCase(name: "netlink-audit", category: .network, code: "import socket\nsocket.socket(16, socket.SOCK_RAW, 9)\n'not reached'",
                    expect: .blocked("socket"), why: "other netlink families configure the kernel"),
        HostileCase(name: "netlink-uevent", category: .network, code: "import socket\nsocket.socket(16, socket.SOCK_DGRAM, 15)\n'not reached'",
                    expect: .blocked("socket"), why: "device events of the host"),
        HostileCase(name: "af-alg", category: .network, code: "import socket\nsocket.socket(38, socket.SOCK_SEQPACKET, 0)\n'not reached'",
                    expect: .blocked("socket"), why: "the kernel crypto API, a frequent exploit path"),
        HostileCase(name: "af-vsock", category: .network, code: "import socket\nsocket.socket(40, socket.SOCK_STREAM, 0)\n'not reached'",
                    expect: .blocked("socket"), why: "host/VM sockets"),
        HostileCase(name: "other-families", category: .network, code: #"""
            import socket
            seen = set()
            for family in (3, 4, 5, 9, 21, 29, 30, 31, 44):   # AX25 IPX APPLETALK X25 RDS CAN TIPC BLUETOOTH XDP
                try:
                    socket.socket(family, socket.SOCK_DGRAM, 0); seen.add('made')
                except OSError as e:
                    seen.add(type(e).__name__)
            sorted(seen)
            """#, expect: .value("['PermissionError']"), why: "only AF_UNIX sockets can be made without network"),
        HostileCase(name: "dns", category: .network, code: "import socket\n" + exceptionName(of: "socket.getaddrinfo('example.com', 443)"),
                    expect: .value("'gaierror'"), why: "no resolver to ask"),
        HostileCase(name: "abstract-socket-of-a-neighbour", category: .network, code: #"""
            import socket, time
            listed = [l.split()[-1] for l in open('/proc/net/unix').read().splitlines()[1:] if 'codeinterp-corpus' in l]
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect('\0codeinterp-corpus'); s.sendall(b'hello'); r = 'connected'
            except OSError as e:
                r = type(e).__name__
            (r, listed)
            """#, expect: .value("('ConnectionRefusedError', [])"),
                    why: "abstract Unix sockets live in a network namespace: each execution has its own",
                    neighbour: #"""
            import socket
            s = socket.socket(socket.AF_UNIX); s.bind('\0codeinterp-corpus'); s.listen()
            print('ready', flush=True)
            s.accept()
            """#),
        HostileCase(name: "interfaces", category: .network, code: exceptionName(of: "__import__('socket').if_nameindex()", success: "'listed'"),
                    expect: .value("'PermissionError'"), why: "not even the list of interfaces"),
    ]

    // MARK: Resources

    static let resources: [HostileCase] = [
        HostileCase(name: "fork-bomb", category: .resources, code: #"""
            import os
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
            """#, expect: .stopped(.timeout), why: "bounded by the process limit, ended by the wall clock with everything it forked",
                    timeout: 3),
        HostileCase(name: "thread-bomb", category: .resources, code: #"""
            import threading, time
            started = 0
            try:
                while True:
                    threading.Thread(target=time.sleep, args=(30,), daemon=True).start(); started += 1
            except RuntimeError as e:
                r = str(e)
            (r, started < 1000)
            """#, expect: .value("(\"can't start new thread\", True)"), why: "threads count against the same process limit"),
        HostileCase(name: "allocate-8-gib", category: .resources, code: "x = bytearray(8 * 1024**3)",
                    expect: .stopped(.memoryLimit), why: "one allocation past the memory limit"),
        HostileCase(name: "numpy-18-gib", category: .resources, code: "import numpy as np\nnp.ones((50000, 50000))",
                    expect: .stopped(.memoryLimit), why: "the same through numpy"),
        HostileCase(name: "grow-until-killed", category: .resources,
                    code: "chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 1024**2))",
                    expect: .stopped(.memoryLimit), why: "gradual growth ends at the limit, not in the host's OOM killer", timeout: 20),
        HostileCase(name: "map-64-gib-noreserve", category: .resources, code: #"""
            import mmap
            try:
                mmap.mmap(-1, 64 * 1024**3, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000); r = 'mapped'
            except OSError as e:
                r = e.strerror
            r
            """#, expect: .value("'Cannot allocate memory'"), why: "MAP_NORESERVE does not get around the address-space limit"),
        HostileCase(name: "fill-tmp", category: .resources, code: #"""
            import os
            try:
                with open('/tmp/fill', 'wb') as f:
                    while True:
                        f.write(b'x' * (1 << 20))
            except OSError as e:
                r = e.strerror
            (r, os.path.getsize('/tmp/fill') <= 256 << 20)
            """#, expect: .value(["('File too large', True)", "('No space left on device', True)"]),
                    why: "/tmp is a tmpfs of tmp_bytes"),
        HostileCase(name: "fill-dev-shm", category: .resources, code: #"""
            import os
            try:
                with open('/dev/shm/fill', 'wb') as f:
                    while True:
                        f.write(b'x' * (1 << 20))
            except OSError as e:
                r = e.strerror
            (r, os.path.getsize('/dev/shm/fill') <= 256 << 20)
            """#, expect: .value(["('File too large', True)", "('No space left on device', True)"]),
                    why: "so is /dev/shm"),
        HostileCase(name: "one-file-over-the-size-limit", category: .resources, code: #"""
            try:
                with open('big.bin', 'wb') as f:
                    for _ in range(200):
                        f.write(b'x' * (1 << 20))
                r = 'written'
            except OSError as e:
                r = e.strerror
            r
            """#, expect: .value("'File too large'"), why: "RLIMIT_FSIZE: no single file past file_size_bytes"),
        HostileCase(name: "fill-mnt-data", category: .resources, code: #"""
            written = 0
            try:
                for i in range(4):
                    with open(f'bomb{i}', 'wb') as f:
                        for _ in range(90):
                            f.write(b'\0' * (1 << 20)); written += 1
            except OSError as e:
                pass
            written <= 256
            """#, expect: .value("True"),
                    why: "many files under the per-file limit end at /mnt/data's byte budget (data_bytes, a tmpfs), not at the host's full disk",
                    check: { r in r.stderr.contains("/mnt/data reached its budget of 256 MiB") ? nil : "no word of the budget: \(r.stderr.suffix(300))" }),
        HostileCase(name: "stdout-flood", category: .resources, code: "while True:\n    print('y' * 1000)",
                    expect: .stopped(.outputLimit), why: "output past its limit many times over ends the execution"),
        HostileCase(name: "stderr-flood", category: .resources, code: "import sys\nwhile True:\n    sys.stderr.write('e' * 1000 + '\\n')",
                    expect: .stopped(.outputLimit), why: "stderr has its own limit"),
        HostileCase(name: "flood-from-a-subprocess", category: .resources, code: "import subprocess\nsubprocess.run(['yes'])",
                    expect: .stopped(.outputLimit), why: "a child writing to the inherited stdout is counted too"),
        HostileCase(name: "one-huge-line", category: .resources, code: "import sys\nsys.stdout.write('z' * (8 << 20))\n'done'",
                    expect: .value("'done'"), why: "a single write past the limit is truncated, the execution goes on",
                    check: { r in r.truncated.stdout && r.stdout.utf8.count <= 1 << 20 ? nil : "stdout \(r.stdout.utf8.count) bytes, truncated \(r.truncated.stdout)" }),
        HostileCase(name: "huge-last-value", category: .resources, code: "'x' * (64 << 20)",
                    expect: .stopped(.ok), why: "the repr of the last value is capped (64 KiB), not shipped whole",
                    check: { r in (r.result?["text/plain"]?.utf8.count ?? 0) < 70_000 ? nil : "value of \(r.result?["text/plain"]?.utf8.count ?? 0) bytes" }),
        HostileCase(name: "cpu-spin", category: .resources, code: "while True:\n    pass", expect: .stopped(.timeout),
                    why: "the wall clock ends it", timeout: 2),
        HostileCase(name: "cpu-spin-in-c", category: .resources, code: "sum(range(10**13))", expect: .stopped(.timeout),
                    why: "a C loop that never returns to the interpreter is killed all the same", timeout: 2),
        HostileCase(name: "ignore-every-signal", category: .resources, code: #"""
            import signal, time
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM, signal.SIGXCPU, signal.SIGUSR1):
                signal.signal(s, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
            while True:
                time.sleep(1)
            """#, expect: .stopped(.timeout), why: "SIGKILL of the namespace cannot be ignored or blocked", timeout: 2),
        HostileCase(name: "leftover-children", category: .resources, code: #"""
            import os, subprocess
            subprocess.Popen(['sleep', '7781'], start_new_session=True)
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execvp('sleep', ['sleep', '7782'])
                os._exit(0)
            'started'
            """#, expect: .value("'started'"), why: "detached and double-forked processes end with their execution",
                    check: { _ in
                        let left = try processes(withCommandLine: "sleep\u{0}7781\u{0}") + processes(withCommandLine: "sleep\u{0}7782\u{0}")
                        return left.isEmpty ? nil : "still alive: \(left)"
                    }),
        HostileCase(name: "raise-the-process-limit", category: .resources, code: #"""
            import resource
            soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
            try:
                resource.setrlimit(resource.RLIMIT_NPROC, (hard * 10, hard * 10)); r = 'raised'
            except (ValueError, OSError) as e:
                r = type(e).__name__
            r
            """#, expect: .value("'ValueError'"), why: "hard limits only go down"),
        HostileCase(name: "exhaust-descriptors", category: .resources, code: #"""
            opened = []
            try:
                while True:
                    opened.append(open('/dev/null'))
            except OSError as e:
                r = e.strerror
            (r, len(opened) < 300)
            """#, expect: .value("('Too many open files', True)"), why: "RLIMIT_NOFILE"),
        HostileCase(name: "c-stack-overflow", category: .resources,
                    code: "import sys\nsys.setrecursionlimit(10**6)\nf = lambda: eval('f()')\nf()",
                    expect: .stopped(.killed), why: "recursion through C with the guard lifted overflows the stack: a crash of its own process only",
                    check: { r in r.error?.value.contains("signal 11") == true ? nil : "not reported as SIGSEGV: \(r.error?.value ?? "")" }),
        HostileCase(name: "kill-every-process", category: .resources, code: #"""
            import os
            try:
                os.kill(-1, 9); r = 'sent'
            except ProcessLookupError:
                r = 'nobody'
            r
            """#, expect: .value("'nobody'"), why: "alone in its pid namespace: kill(-1) reaches no one"),
        HostileCase(name: "kill-pid-1", category: .resources, code: "import os\nos.kill(1, 9)", expect: .stopped(.killed),
                    why: "pid 1 is itself: the interpreter ends, and the result says so"),
    ]

    // MARK: Persistence

    static let persistence: [HostileCase] = [
        HostileCase(name: "tmp-shm-var-tmp-mnt-data", category: .persistence, code: #"""
            for path in ('/tmp/left', '/dev/shm/left', '/var/tmp/left-too', '/mnt/data/left', '/tmp/numpy.py'):
                open(path, 'w').write('x')
            'written'
            """#, expect: .value("'written'"), why: "every writable place is the execution's own",
                    then: .init(code: #"""
            import os
            [os.path.exists(p) for p in ('/tmp/left', '/dev/shm/left', '/var/tmp/left-too', '/mnt/data/left', '/tmp/numpy.py')]
            """#, expect: "[False, False, False, False, False]")),
        HostileCase(name: "sysv-shared-memory", category: .persistence, code: libc + #"""
            libc.shmat.restype = ctypes.c_void_p
            segment = libc.shmget(0x5ec2e7, 4096, 0o1000 | 0o666)
            assert segment >= 0, os.strerror(ctypes.get_errno())
            ctypes.memmove(libc.shmat(segment, None, 0), b'LEFT-BEHIND', 11)
            'written'
            """#, expect: .value("'written'"), why: "System V segments outlive their creator unless their IPC namespace goes with it",
                    then: .init(code: libc + #"""
            segment = libc.shmget(0x5ec2e7, 0, 0)
            (os.strerror(ctypes.get_errno()) if segment < 0 else 'found', open('/proc/sysvipc/shm').read().splitlines()[1:])
            """#, expect: "('No such file or directory', [])")),
        HostileCase(name: "sysv-semaphore", category: .persistence,
                    code: libc + "libc.semget(0x5e4a, 1, 0o1000 | 0o666) >= 0", expect: .value("True"),
                    why: "semaphores too", then: .init(code: libc + "libc.semget(0x5e4a, 0, 0)", expect: "-1")),
        HostileCase(name: "monkeypatch-a-preloaded-module", category: .persistence, code: #"""
            import json, numpy
            json.loads = lambda *a, **k: 'poisoned'
            numpy.sum = lambda *a, **k: 'poisoned'
            'patched'
            """#, expect: .value("'patched'"), why: "every execution is a fresh fork of the zygote: changes die with it",
                    then: .init(code: "import json, numpy\n(json.loads('1'), int(numpy.sum([1, 2])))", expect: "(1, 3)")),
        HostileCase(name: "environment-and-cwd", category: .persistence,
                    code: "import os\nos.environ['LEFT'] = '1'; os.putenv('LEFT2', '1'); os.chdir('/tmp')\n'changed'",
                    expect: .value("'changed'"), why: "nor does process state",
                    then: .init(code: "import os\n('LEFT' in os.environ, os.getcwd())", expect: "(False, '/mnt/data')")),
        HostileCase(name: "lowered-limits", category: .persistence, code: #"""
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (10, 10)); resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
            'lowered'
            """#, expect: .value("'lowered'"), why: "a later execution gets the profile's limits, not what this one left",
                    then: .init(code: "import resource\nresource.getrlimit(resource.RLIMIT_NOFILE)[0] > 10", expect: "True")),
    ]
}

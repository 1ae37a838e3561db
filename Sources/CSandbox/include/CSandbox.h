#ifndef CODEINTERP_CSANDBOX_H
#define CODEINTERP_CSANDBOX_H
// C wrappers for what Swift cannot call directly: variadic functions (prctl, syscall), function-like macros
// (WIFEXITED...), and _GNU_SOURCE declarations (unshare, setns, CLONE_NEW*). One small function each.
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/resource.h>

// Namespace flags, so Swift need not know the values.
extern const int CI_CLONE_NEWNS, CI_CLONE_NEWNET, CI_CLONE_NEWIPC, CI_CLONE_NEWUTS, CI_CLONE_NEWPID, CI_CLONE_NEWUSER;

extern const int CI_O_PATH, CI_AT_EMPTY_PATH;

int ci_unshare(int flags);
/// pipe2(fds, O_CLOEXEC)
int ci_pipe_cloexec(int fds[2]);
/// socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC): a child's ready channel, which can carry a descriptor.
int ci_socketpair_cloexec(int fds[2]);
int ci_setresuid(uid_t uid);
int ci_setresgid(gid_t gid);
/// The MS_* flags a bind remount of `path` must keep (the kernel refuses to clear locked ro/noexec/atime flags).
long ci_locked_mount_flags(const char *path);
int ci_setns(int fd, int nstype);
int ci_pivot_root(const char *new_root, const char *put_old);
/// prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
int ci_set_no_new_privs(void);
/// prctl(PR_SET_PDEATHSIG, sig): the kernel signals us when the parent dies.
int ci_set_parent_death_signal(int sig);
/// Closes every descriptor >= lowfd (close_range, with a /proc-free fallback loop).
void ci_close_from(int lowfd);
/// seccomp(SECCOMP_SET_MODE_FILTER, 0, prog) with the exported sock_filter array.
int ci_load_seccomp_filter(const void *instructions, size_t byte_count);

/// Installs the SIGSYS handler that turns a profile's kill rule (compiled as SECCOMP_RET_TRAP) into: write
/// `blocked_frame` (at most 32 bytes) with the call's number (i32) stored at `number_offset` on `report_fd`, then
/// exit_group; and SIGXCPU (the soft CPU limit, which pid 1 would ignore) into: write `cpu_frame` (at most 32
/// bytes), then exit_group. The frames are copied here; each handler writes its frame with a single write, and
/// is async-signal-safe.
int ci_install_sigsys_reporter(int report_fd, const unsigned char *blocked_frame, size_t blocked_count,
                               size_t number_offset, const unsigned char *cpu_frame, size_t cpu_count);
/// prctl(PR_SET_DUMPABLE, 0): no core dumps, and /proc/PID/mem and ptrace need CAP_SYS_PTRACE.
int ci_set_not_dumpable(void);
/// Empties the capability bounding set (needs CAP_SETPCAP: call before giving up root).
int ci_drop_bounding_set(void);
/// Clears the ambient, permitted, effective and inheritable capability sets.
int ci_clear_capabilities(void);
/// sendmsg with `count` (<= 8) descriptors attached as SCM_RIGHTS; MSG_NOSIGNAL; retries EINTR.
ssize_t ci_send_with_fds(int socket, const void *bytes, size_t length, const int *fds, int count);
/// recvmsg that also collects SCM_RIGHTS descriptors (close-on-exec) into `fds`; retries EINTR.
ssize_t ci_recv_with_fds(int socket, void *buffer, size_t length, int *fds, int max_fds, int *count);

/// Signals: block SIGCHLD in the zygote (read through signalfd), restore the default mask in children.
int ci_signalfd_sigchld(void);
void ci_drain_signalfd(int fd);
int ci_unblock_all_signals_and_reset(void);
/// Blocks every signal that can be blocked (a one-shot child's last steps run nothing of the user's).
int ci_block_all_signals(void);

/// waitpid status decoding (macros in C).
int ci_wifexited(int status);
int ci_wexitstatus(int status);
int ci_wifsignaled(int status);
int ci_wtermsig(int status);

/// setrlimit with one value for soft and hard (or soft < hard).
int ci_setrlimit(int resource, uint64_t soft, uint64_t hard);
extern const int CI_RLIMIT_AS, CI_RLIMIT_CPU, CI_RLIMIT_FSIZE, CI_RLIMIT_NOFILE, CI_RLIMIT_NPROC, CI_RLIMIT_CORE;

/// Count of threads of this process, from /proc/self/status (-1 if unknown).
int ci_thread_count(void);
/// VmSize of this process in bytes (0 if unknown).
uint64_t ci_vm_size(void);

/* Python's object arenas from one region (PyObject_SetArenaAllocator), collapsed into huge pages after the
 * preload so that forking the zygote copies few page-table entries. See sandbox.c. */
int ci_arenas_reserve(size_t bytes);
void *ci_arena_alloc(void *ctx, size_t size);
void ci_arena_free(void *ctx, void *ptr, size_t size);
uint64_t ci_collapse_into_huge_pages(void);

/// fork() with stdio flushed first.
pid_t ci_fork(void);
#endif

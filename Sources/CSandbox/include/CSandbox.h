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

/// Shared between the zygote and one child (MAP_SHARED): how the child reports what it cannot say on its pipes.
typedef struct ci_child_report {
    volatile int32_t blocked_syscall;   // -1 or the number a kill rule stopped
    volatile int32_t stage;             // isolation step reached (for diagnostics)
    char error[1024];                   // why isolation failed, NUL-terminated
} ci_child_report;
ci_child_report *ci_child_report_create(void);
void ci_child_report_destroy(ci_child_report *r);
/// Installs the SIGSYS handler that turns a profile's kill rule (compiled as SECCOMP_RET_TRAP) into: record the
/// call in `report`, then SIGKILL the whole process. Async-signal-safe.
int ci_install_sigsys_reporter(ci_child_report *report);

/// Signals: block SIGCHLD in the zygote (read through signalfd), restore the default mask in children.
int ci_signalfd_sigchld(void);
void ci_drain_signalfd(int fd);
int ci_unblock_all_signals_and_reset(void);

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

/// fork() with stdio flushed first.
pid_t ci_fork(void);
#endif

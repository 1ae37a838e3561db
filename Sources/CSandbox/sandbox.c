#define _GNU_SOURCE
#include "CSandbox.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

const int CI_CLONE_NEWNS = CLONE_NEWNS, CI_CLONE_NEWNET = CLONE_NEWNET, CI_CLONE_NEWIPC = CLONE_NEWIPC,
          CI_CLONE_NEWUTS = CLONE_NEWUTS, CI_CLONE_NEWPID = CLONE_NEWPID, CI_CLONE_NEWUSER = CLONE_NEWUSER;
const int CI_RLIMIT_AS = RLIMIT_AS, CI_RLIMIT_CPU = RLIMIT_CPU, CI_RLIMIT_FSIZE = RLIMIT_FSIZE,
          CI_RLIMIT_NOFILE = RLIMIT_NOFILE, CI_RLIMIT_NPROC = RLIMIT_NPROC, CI_RLIMIT_CORE = RLIMIT_CORE;

const int CI_O_PATH = O_PATH, CI_AT_EMPTY_PATH = AT_EMPTY_PATH;

int ci_unshare(int flags) { return unshare(flags); }
int ci_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
int ci_socketpair_cloexec(int fds[2]) { return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds); }
int ci_setresuid(uid_t uid) { return setresuid(uid, uid, uid); }
int ci_setresgid(gid_t gid) { return setresgid(gid, gid, gid); }

long ci_locked_mount_flags(const char *path) {
    struct statvfs v;
    if (statvfs(path, &v) != 0) return -1;
    long f = 0;
    if (v.f_flag & ST_RDONLY) f |= MS_RDONLY;
    if (v.f_flag & ST_NOSUID) f |= MS_NOSUID;
    if (v.f_flag & ST_NODEV) f |= MS_NODEV;
    if (v.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
    if (v.f_flag & ST_NOATIME) f |= MS_NOATIME;
    if (v.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
    if (v.f_flag & ST_RELATIME) f |= MS_RELATIME;
    return f;
}
int ci_setns(int fd, int nstype) { return setns(fd, nstype); }
// glibc has no wrapper for pivot_root.
int ci_pivot_root(const char *new_root, const char *put_old) { return (int)syscall(SYS_pivot_root, new_root, put_old); }
int ci_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }
int ci_set_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }

void ci_close_from(int lowfd) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0) == 0) return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = lowfd; fd < max; fd++) close((int)fd);
}

int ci_load_seccomp_filter(const void *instructions, size_t byte_count) {
    struct sock_fprog prog = {
        .len = (unsigned short)(byte_count / sizeof(struct sock_filter)),
        .filter = (struct sock_filter *)instructions,
    };
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static int sigsys_report_fd = -1;
// The report frames the handlers write, prepared by ci_install_sigsys_reporter: a handler may not build them.
static unsigned char sigsys_frame[32];
static size_t sigsys_frame_count, sigsys_number_offset;
static unsigned char sigxcpu_frame[32];
static size_t sigxcpu_frame_count;

#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1  // si_code of a seccomp trap (<asm-generic/siginfo.h>, which clashes with <signal.h>)
#endif

static void sigsys_handler(int sig, siginfo_t *info, void *ctx) {
    (void)sig; (void)ctx;
    // Only the filter's trap names a call; a SIGSYS another process sent carries no call number to report.
    if (info->si_code != SYS_SECCOMP) return;
    if (sigsys_report_fd >= 0) {
        // A copy on this thread's stack: two threads may trap at once.
        unsigned char record[sizeof sigsys_frame];
        memcpy(record, sigsys_frame, sigsys_frame_count);
        int32_t nr = info->si_syscall;
        memcpy(record + sigsys_number_offset, &nr, sizeof nr);  // little endian on every architecture we build for
        ssize_t ignored = write(sigsys_report_fd, record, sigsys_frame_count);
        (void)ignored;
    }
    // The call was not executed; end the whole process (every thread) as the kill action would have. Not with
    // kill(getpid(), SIGKILL): the interpreter is pid 1 of its namespace, where the kernel ignores that.
    syscall(SYS_exit_group, 128 + SIGSYS);
    for (;;) pause();
}

// RLIMIT_CPU's soft limit sends SIGXCPU, which the kernel ignores for pid 1 of a namespace by default.
static void sigxcpu_handler(int sig) {
    (void)sig;
    if (sigsys_report_fd >= 0) {
        ssize_t ignored = write(sigsys_report_fd, sigxcpu_frame, sigxcpu_frame_count);
        (void)ignored;
    }
    syscall(SYS_exit_group, 128 + SIGXCPU);
    for (;;) pause();
}

int ci_install_sigsys_reporter(int report_fd, const unsigned char *blocked_frame, size_t blocked_count,
                               size_t number_offset, const unsigned char *cpu_frame, size_t cpu_count) {
    if (blocked_count > sizeof sigsys_frame || number_offset + sizeof(int32_t) > blocked_count
        || cpu_count > sizeof sigxcpu_frame) {
        errno = EINVAL;
        return -1;
    }
    memcpy(sigsys_frame, blocked_frame, blocked_count);
    sigsys_frame_count = blocked_count;
    sigsys_number_offset = number_offset;
    memcpy(sigxcpu_frame, cpu_frame, cpu_count);
    sigxcpu_frame_count = cpu_count;
    sigsys_report_fd = report_fd;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = sigsys_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) != 0) return -1;
    struct sigaction xcpu;
    memset(&xcpu, 0, sizeof xcpu);
    xcpu.sa_handler = sigxcpu_handler;
    sigemptyset(&xcpu.sa_mask);
    return sigaction(SIGXCPU, &xcpu, NULL);
}

int ci_set_not_dumpable(void) { return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); }

int ci_drop_bounding_set(void) {
    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
            if (errno == EINVAL) break;  // past the kernel's last capability
            return -1;
        }
    }
    return 0;
}

int ci_clear_capabilities(void) {
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    return (int)syscall(SYS_capset, &header, data);
}

ssize_t ci_send_with_fds(int socket, const void *bytes, size_t length, const int *fds, int count) {
    struct iovec iov = { .iov_base = (void *)bytes, .iov_len = length };
    union { char buf[CMSG_SPACE(sizeof(int) * 8)]; struct cmsghdr align; } control;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (count > 0) {
        if (count > 8) { errno = EINVAL; return -1; }
        memset(&control, 0, sizeof control);
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * count);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * count);
    }
    ssize_t n;
    do { n = sendmsg(socket, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n;
}

ssize_t ci_recv_with_fds(int socket, void *buffer, size_t length, int *fds, int max_fds, int *count) {
    struct iovec iov = { .iov_base = buffer, .iov_len = length };
    union { char buf[CMSG_SPACE(sizeof(int) * 32)]; struct cmsghdr align; } control;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
    *count = 0;
    ssize_t n;
    do { n = recvmsg(socket, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int received = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *in = (int *)CMSG_DATA(c);
        for (int i = 0; i < received; i++) {
            if (*count < max_fds) fds[(*count)++] = in[i]; else close(in[i]);
        }
    }
    return n;
}

int ci_signalfd_sigchld(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

void ci_drain_signalfd(int fd) {
    struct signalfd_siginfo info;
    while (read(fd, &info, sizeof info) == sizeof info) {}
}

int ci_unblock_all_signals_and_reset(void) {
    sigset_t set;
    sigemptyset(&set);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGXFSZ, SIG_IGN);  // oversized writes fail with EFBIG (a Python OSError) instead of killing
    return sigprocmask(SIG_SETMASK, &set, NULL);
}

int ci_block_all_signals(void) {
    sigset_t set;
    sigfillset(&set);
    return sigprocmask(SIG_BLOCK, &set, NULL);
}

int ci_wifexited(int status) { return WIFEXITED(status); }
int ci_wexitstatus(int status) { return WEXITSTATUS(status); }
int ci_wifsignaled(int status) { return WIFSIGNALED(status); }
int ci_wtermsig(int status) { return WTERMSIG(status); }

int ci_setrlimit(int resource, uint64_t soft, uint64_t hard) {
    struct rlimit rl = { .rlim_cur = soft, .rlim_max = hard };
    return setrlimit(resource, &rl);
}

static long status_field(const char *name) {
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strstr(buf, name);
    if (!p) return -1;
    return strtol(p + strlen(name), NULL, 10);
}

int ci_thread_count(void) { return (int)status_field("\nThreads:"); }
uint64_t ci_vm_size(void) { long kb = status_field("\nVmSize:"); return kb > 0 ? (uint64_t)kb * 1024 : 0; }

pid_t ci_fork(void) {
    fflush(NULL);
    return fork();
}

/* Python's object arenas in one region, so that the zygote's heap can be backed by huge pages.
 *
 * Forking copies a page-table entry per resident 4 KiB page: for a zygote with ~150 MB of anonymous memory that is
 * most of a fork's cost. Memory the kernel maps with 2 MiB pages costs one entry per 2 MiB instead, and a child's
 * first write to such a page still copies only 4 KiB (the kernel splits the mapping first). Python's allocator
 * takes 1 MiB arenas from separate mmaps, which no 2 MiB page can cover; carved out of one aligned region instead,
 * they can be collapsed into huge pages once the scientific stack is imported. */
static char *arena_base;
static size_t arena_capacity, arena_used, arena_size;
static void *arena_free_list;

int ci_arenas_reserve(size_t bytes) {
    const size_t align = 2u << 20;
    bytes = (bytes + align - 1) & ~(align - 1);
    char *p = mmap(NULL, bytes + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return -1;
    char *aligned = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
    if (aligned > p) munmap(p, (size_t)(aligned - p));
    size_t tail = (size_t)((p + bytes + align) - (aligned + bytes));
    if (tail) munmap(aligned + bytes, tail);
    arena_base = aligned;
    arena_capacity = bytes;
    return 0;
}

void *ci_arena_alloc(void *ctx, size_t size) {
    (void)ctx;
    if (arena_free_list && size == arena_size) {
        void *p = arena_free_list;
        arena_free_list = *(void **)p;
        return p;
    }
    if (arena_base && size <= arena_capacity - arena_used) {
        void *p = arena_base + arena_used;
        arena_used += size;
        if (!arena_size) arena_size = size;
        return p;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void ci_arena_free(void *ctx, void *ptr, size_t size) {
    (void)ctx;
    if (arena_base && (char *)ptr >= arena_base && (char *)ptr < arena_base + arena_capacity && size == arena_size) {
        /* Kept for the next arena: the region is never given back in pieces. */
        *(void **)ptr = arena_free_list;
        arena_free_list = ptr;
        return;
    }
    munmap(ptr, size);
}

/* Gives back the region's unused end (children's new arenas come from plain mmaps, counted by RLIMIT_AS like
 * any other memory of theirs) and collapses the anonymous memory the zygote has touched into huge pages.
 * Returns the bytes collapsed; 0 where the kernel cannot (before Linux 6.1, or THP disabled). */
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
uint64_t ci_collapse_into_huge_pages(void) {
    const uintptr_t align = 2u << 20;
    if (arena_base) {
        size_t keep = (arena_used + align - 1) & ~(align - 1);
        if (keep < arena_capacity) munmap(arena_base + keep, arena_capacity - keep);
        arena_capacity = keep;
    }
    FILE *maps = fopen("/proc/self/maps", "re");
    if (!maps) return 0;
    uintptr_t ranges[4096][2];
    int n = 0;
    char line[512];
    while (n < 4096 && fgets(line, sizeof line, maps)) {
        unsigned long lo, hi, offset, inode;
        char perms[8], dev[16], path[256] = "";
        if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %255s", &lo, &hi, perms, &offset, dev, &inode, path) < 6) continue;
        /* Private writable anonymous memory: Python's objects, malloc's heap, numpy's buffers. */
        if (strcmp(perms, "rw-p") != 0 || inode != 0 || (path[0] && strcmp(path, "[heap]") != 0)) continue;
        uintptr_t a = (lo + align - 1) & ~(align - 1), b = hi & ~(align - 1);
        if (b > a) { ranges[n][0] = a; ranges[n][1] = b; n++; }
    }
    fclose(maps);
    uint64_t collapsed = 0;
    unsigned char resident[512];
    for (int i = 0; i < n; i++) {
        for (uintptr_t a = ranges[i][0]; a < ranges[i][1]; a += align) {
            /* Only what is mostly in use: collapsing fills the rest of the 2 MiB, and a reserved buffer that was
             * never touched (OpenBLAS keeps some) would become resident memory for nothing. */
            if (mincore((void *)a, align, resident) != 0) continue;
            int pages = 0;
            for (int p = 0; p < 512; p++) pages += resident[p] & 1;
            if (pages >= 448 && madvise((void *)a, align, MADV_COLLAPSE) == 0) collapsed += align;
        }
    }
    return collapsed;
}

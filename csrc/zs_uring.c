/*
 * zs_uring.c -- ring setup, probing, submission and provided-buffer rings
 * over the raw io_uring system calls (see zs_uring.h).
 */
#include "zs_uring.h"

#include <stdio.h>

static const char *const cap_names[] = {
    "accept_multishot", "recv_multishot", "buffer_ring", "send", "send_zc",
    "poll_multishot", "cancel_fd", "wait_timeout", "defer_taskrun", "recvmsg", "sendmsg",
};

const char *zs_uring_cap_name(unsigned bit_index)
{
    return bit_index < sizeof cap_names / sizeof cap_names[0] ? cap_names[bit_index] : NULL;
}

#if defined(__linux__)

#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>

/* One number on every architecture but alpha since Linux 5.1; old kernel
 * headers (those wheels are built against) may not name them. */
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif

_Static_assert(sizeof(zs_uring_sqe) == 64, "io_uring_sqe is 64 bytes");
_Static_assert(sizeof(zs_uring_cqe) == 16, "io_uring_cqe is 16 bytes");
_Static_assert(sizeof(zs_uring_params) == 120, "io_uring_params is 120 bytes");
_Static_assert(sizeof(zs_uring_buf) == 16, "io_uring_buf is 16 bytes");
_Static_assert(sizeof(zs_uring_buf_reg) == 40, "io_uring_buf_reg is 40 bytes");

static int sys_setup(unsigned entries, zs_uring_params *p)
{
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags,
                     void *arg, size_t argsz)
{
    return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz);
}

static int sys_register(int fd, unsigned opcode, void *arg, unsigned nr_args)
{
    return (int)syscall(__NR_io_uring_register, fd, opcode, arg, nr_args);
}

static const char *kernel_release(struct utsname *u)
{
    return uname(u) == 0 ? u->release : "unknown";
}

/* kernel.io_uring_disabled (6.6+): 0, 1 (only CAP_SYS_ADMIN and
 * kernel.io_uring_group), 2 (nobody); -1 when the kernel has no such knob. */
static int io_uring_disabled_sysctl(void)
{
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
    int v = -1;
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static void setup_failure(int err, char *reason, size_t len)
{
    struct utsname u;
    int disabled = io_uring_disabled_sysctl();
    if (err == EPERM && disabled == 2)
        snprintf(reason, len, "io_uring is disabled on this system (kernel.io_uring_disabled=2)");
    else if (err == EPERM && disabled == 1)
        snprintf(reason, len, "io_uring is limited to CAP_SYS_ADMIN and the kernel.io_uring_group "
                              "group (kernel.io_uring_disabled=1)");
    else if (err == EPERM)
        snprintf(reason, len, "io_uring_setup failed with EPERM: a seccomp filter forbids io_uring "
                              "(container runtimes install one)");
    else if (err == ENOSYS)
        snprintf(reason, len, "io_uring_setup failed with ENOSYS: kernel %s has no io_uring, or a "
                              "seccomp filter hides it (container runtimes install one)",
                 kernel_release(&u));
    else if (err == EINVAL)
        snprintf(reason, len, "io_uring_setup refused every configuration tried: kernel %s is "
                              "too old", kernel_release(&u));
    else if (err == ENOMEM)
        snprintf(reason, len, "io_uring_setup failed with ENOMEM (before Linux 5.12 rings count "
                              "against RLIMIT_MEMLOCK)");
    else
        snprintf(reason, len, "io_uring_setup failed: %s", strerror(err));
}

/* ZS_URING_CAP_* from the kernel's opcode table and feature bits.  Flags
 * such as multishot cannot be probed one by one, so an opcode that arrived
 * in the same release vouches for them: IORING_OP_SOCKET (5.19) for
 * multishot accept and cancel-by-fd, IORING_OP_SEND_ZC (6.0) for multishot
 * recv, IORING_FEAT_RSRC_TAGS (5.13) for multishot poll. */
static unsigned probe_caps(zs_uring *r, unsigned features)
{
    struct {
        uint8_t last_op, ops_len;
        uint16_t resv;
        uint32_t resv2[3];
        struct { uint8_t op, resv; uint16_t flags; uint32_t resv2; } ops[256];
    } probe;
    memset(&probe, 0, sizeof probe);
    if (sys_register(r->fd, ZS_REGISTER_PROBE, &probe, 256) < 0) {
        r->probe_error = errno;
        return 0;
    }
#define HAS(op) ((op) < probe.ops_len && (probe.ops[op].flags & 1u))
    unsigned caps = 0;
    if (HAS(ZS_OP_SEND))
        caps |= ZS_URING_CAP_SEND;
    if (HAS(ZS_OP_RECVMSG))
        caps |= ZS_URING_CAP_RECVMSG;
    if (HAS(ZS_OP_SENDMSG))
        caps |= ZS_URING_CAP_SENDMSG;
    if (HAS(ZS_OP_SOCKET) && HAS(ZS_OP_ACCEPT))
        caps |= ZS_URING_CAP_ACCEPT_MULTI;
    if (HAS(ZS_OP_SOCKET) && HAS(ZS_OP_ASYNC_CANCEL))
        caps |= ZS_URING_CAP_CANCEL_FD;
    if (HAS(ZS_OP_SEND_ZC))
        caps |= ZS_URING_CAP_SEND_ZC | (HAS(ZS_OP_RECV) ? ZS_URING_CAP_RECV_MULTI : 0);
    if (HAS(ZS_OP_POLL_ADD) && (features & ZS_FEAT_RSRC_TAGS))
        caps |= ZS_URING_CAP_POLL_MULTI;
#undef HAS
    if (features & ZS_FEAT_EXT_ARG)
        caps |= ZS_URING_CAP_EXT_ARG;
    if (r->setup_flags & ZS_SETUP_DEFER_TASKRUN)
        caps |= ZS_URING_CAP_DEFER_TASKRUN;
    /* buffer rings are tried for real: a seccomp filter may allow setup
     * and refuse io_uring_register */
    zs_ubr br;
    if (zs_ubr_init(r, &br, 0xffff, 1, 64) == 0) {
        zs_ubr_free(r, &br);
        caps |= ZS_URING_CAP_BUF_RING;
    }
    return caps;
}

static int map_rings(zs_uring *r, const zs_uring_params *p)
{
    r->sq_map_len = p->sq_off.array + p->sq_entries * sizeof(unsigned);
    r->cq_map_len = p->cq_off.cqes + p->cq_entries * sizeof(zs_uring_cqe);
    int single = (p->features & ZS_FEAT_SINGLE_MMAP) != 0;
    if (single && r->cq_map_len > r->sq_map_len)
        r->sq_map_len = r->cq_map_len;
    r->sq_map = mmap(NULL, r->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     r->fd, ZS_OFF_SQ_RING);
    if (r->sq_map == MAP_FAILED)
        return -1;
    if (single) {
        r->cq_map = r->sq_map;
        r->cq_map_len = 0;
    } else {
        r->cq_map = mmap(NULL, r->cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                         r->fd, ZS_OFF_CQ_RING);
        if (r->cq_map == MAP_FAILED)
            return -1;
    }
    r->sqes_map_len = p->sq_entries * sizeof(zs_uring_sqe);
    r->sqes = mmap(NULL, r->sqes_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                   r->fd, ZS_OFF_SQES);
    if (r->sqes == MAP_FAILED) {
        r->sqes = NULL;
        return -1;
    }
    unsigned char *sq = r->sq_map, *cq = r->cq_map;
    r->sq_head = (unsigned *)(sq + p->sq_off.head);
    r->sq_tail = (unsigned *)(sq + p->sq_off.tail);
    r->sq_mask = *(unsigned *)(sq + p->sq_off.ring_mask);
    r->sq_entries = *(unsigned *)(sq + p->sq_off.ring_entries);
    r->cq_head = (unsigned *)(cq + p->cq_off.head);
    r->cq_tail = (unsigned *)(cq + p->cq_off.tail);
    r->cq_mask = *(unsigned *)(cq + p->cq_off.ring_mask);
    r->cq_entries = *(unsigned *)(cq + p->cq_off.ring_entries);
    r->cqes = (zs_uring_cqe *)(cq + p->cq_off.cqes);
    /* slot i always names sqe i: the array is never touched again */
    unsigned *array = (unsigned *)(sq + p->sq_off.array);
    for (unsigned i = 0; i < r->sq_entries; i++)
        array[i] = i;
    r->sqe_tail = *r->sq_tail;
    return 0;
}

int zs_uring_init(zs_uring *r, unsigned sq_entries, unsigned cq_entries, int any_thread,
                  char *reason, size_t reason_len)
{
    /* cheapest first: completions handled only inside our own wait (6.1),
     * then without interrupting the task (5.19), then plain */
    static const unsigned modes[] = {
        ZS_SETUP_SINGLE_ISSUER | ZS_SETUP_DEFER_TASKRUN | ZS_SETUP_SUBMIT_ALL,
        ZS_SETUP_COOP_TASKRUN | ZS_SETUP_SUBMIT_ALL,
        0,
    };
    zs_uring_params p;
    memset(r, 0, sizeof *r);
    r->fd = -1;
    for (size_t i = any_thread ? 1 : 0; i < sizeof modes / sizeof modes[0]; i++) {
        memset(&p, 0, sizeof p);
        p.flags = modes[i] | ZS_SETUP_CQSIZE;
        p.cq_entries = cq_entries ? cq_entries : 2 * sq_entries;
        r->fd = sys_setup(sq_entries, &p);
        if (r->fd >= 0 || errno != EINVAL)
            break;
    }
    if (r->fd < 0) {
        int err = errno;
        setup_failure(err, reason, reason_len);
        errno = err;
        return -1;
    }
    r->setup_flags = p.flags;
    if (map_rings(r, &p) != 0) {
        int err = errno;
        snprintf(reason, reason_len, "mapping the io_uring rings failed: %s", strerror(err));
        zs_uring_exit(r);
        errno = err;
        return -1;
    }
    r->caps = probe_caps(r, p.features);
    return 0;
}

void zs_uring_exit(zs_uring *r)
{
    if (r->sqes)
        munmap(r->sqes, r->sqes_map_len);
    if (r->cq_map && r->cq_map != MAP_FAILED && r->cq_map != r->sq_map)
        munmap(r->cq_map, r->cq_map_len);
    if (r->sq_map && r->sq_map != MAP_FAILED)
        munmap(r->sq_map, r->sq_map_len);
    if (r->fd >= 0)
        close(r->fd);
    memset(r, 0, sizeof *r);
    r->fd = -1;
}

int zs_uring_submit(zs_uring *r, unsigned wait_nr, int64_t timeout_ns)
{
    __atomic_store_n(r->sq_tail, r->sqe_tail, __ATOMIC_RELEASE);
    /* all published entries the kernel has not consumed yet, so entries a
     * failed enter left behind go with the next one */
    unsigned to_submit = r->sqe_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
    /* GETEVENTS even when not waiting: with deferred task work, that is
     * what posts completions */
    unsigned flags = ZS_ENTER_GETEVENTS;
    struct { int64_t tv_sec; long long tv_nsec; } ts;
    zs_uring_getevents_arg arg;
    void *argp = NULL;
    size_t argsz = 0;
    if (timeout_ns >= 0 && wait_nr) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        memset(&arg, 0, sizeof arg);
        arg.ts = (uint64_t)(uintptr_t)&ts;
        argp = &arg;
        argsz = sizeof arg;
        flags |= ZS_ENTER_EXT_ARG;
    }
    int rc = sys_enter(r->fd, to_submit, wait_nr, flags, argp, argsz);
    if (rc >= 0)
        return rc;
    /* a timeout, a signal, or completions to reap first (EBUSY/EAGAIN):
     * the caller reaps and comes back */
    if (errno == ETIME || errno == EINTR || errno == EBUSY || errno == EAGAIN)
        return 0;
    return -errno;
}

int zs_ubr_init(zs_uring *r, zs_ubr *br, uint16_t bgid, unsigned entries, size_t buf_size)
{
    memset(br, 0, sizeof *br);
    if (entries == 0 || entries > 32768 || (entries & (entries - 1)) || buf_size == 0 ||
        buf_size > UINT32_MAX) {
        errno = EINVAL;
        return -1;
    }
    br->ring_len = entries * sizeof(zs_uring_buf);
    br->bufs_len = entries * buf_size;
    /* page-aligned, as the kernel requires of the ring */
    br->ring = mmap(NULL, br->ring_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (br->ring == MAP_FAILED) {
        br->ring = NULL;
        return -1;
    }
    /* Made resident now: the kernel takes the buffers in ring order, so each
     * is written within the group's first `entries` receives anyway, and a
     * process's memory then does not creep up while it serves. */
    br->bufs = mmap(NULL, br->bufs_len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (br->bufs == MAP_FAILED) {
        int err = errno;
        munmap(br->ring, br->ring_len);
        memset(br, 0, sizeof *br);
        errno = err;
        return -1;
    }
    zs_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)br->ring;
    reg.ring_entries = entries;
    reg.bgid = bgid;
    if (sys_register(r->fd, ZS_REGISTER_PBUF_RING, &reg, 1) != 0) {
        int err = errno;
        munmap(br->bufs, br->bufs_len);
        munmap(br->ring, br->ring_len);
        memset(br, 0, sizeof *br);
        errno = err;
        return -1;
    }
    br->bgid = bgid;
    br->buf_size = buf_size;
    br->mask = entries - 1;
    for (unsigned bid = 0; bid < entries; bid++)
        zs_ubr_put(br, bid);
    zs_ubr_publish(br);
    return 0;
}

void zs_ubr_free(zs_uring *r, zs_ubr *br)
{
    if (!br->ring)
        return;
    zs_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.bgid = br->bgid;
    (void)sys_register(r->fd, ZS_UNREGISTER_PBUF_RING, &reg, 1);
    munmap(br->bufs, br->bufs_len);
    munmap(br->ring, br->ring_len);
    memset(br, 0, sizeof *br);
}

int zs_uring_available(unsigned *caps, char *reason, size_t reason_len)
{
    zs_uring r;
    *caps = 0;
    if (zs_uring_init(&r, 8, 0, 0, reason, reason_len) != 0)
        return 0;
    *caps = r.caps;
    int probe_error = r.probe_error;
    zs_uring_exit(&r);
    unsigned missing = ZS_URING_CAPS_REQUIRED & ~*caps;
    if (missing == 0) {
        snprintf(reason, reason_len, "available");
        return 1;
    }
    struct utsname u;
    if (probe_error == EPERM || probe_error == ENOSYS) {
        snprintf(reason, reason_len, "io_uring_register failed with %s: a seccomp filter forbids "
                 "it (container runtimes install one)", probe_error == EPERM ? "EPERM" : "ENOSYS");
        return 0;
    }
    if (probe_error) {
        snprintf(reason, reason_len, "io_uring_register(IORING_REGISTER_PROBE) failed: %s "
                 "(kernel %s is older than 5.6?)", strerror(probe_error), kernel_release(&u));
        return 0;
    }
    int n = snprintf(reason, reason_len, "kernel %s lacks io_uring's", kernel_release(&u));
    for (unsigned bit = 0; zs_uring_cap_name(bit); bit++)
        if ((missing & (1u << bit)) && n > 0 && (size_t)n < reason_len)
            n += snprintf(reason + n, reason_len - (size_t)n, " %s", zs_uring_cap_name(bit));
    if (n > 0 && (size_t)n < reason_len)
        snprintf(reason + n, reason_len - (size_t)n, " (Linux 6.0 or later has them)");
    return 0;
}

#else /* not Linux */

int zs_uring_available(unsigned *caps, char *reason, size_t reason_len)
{
    *caps = 0;
    snprintf(reason, reason_len, "io_uring is Linux-only");
    return 0;
}

#endif

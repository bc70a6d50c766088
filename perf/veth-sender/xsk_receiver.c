/*
 * A minimal AF_XDP receiver in C, the reference the packet processor's afxdp driver is measured against: raw
 * syscalls only (no libbpf or libxdp), copy mode, one queue. It builds the XSKMAP redirect program, attaches it
 * with a BPF link, registers a UMEM, keeps the fill ring full and drops (recycles) every frame it receives. It
 * stops on SIGTERM or SIGINT and prints the frames received and the AF_XDP statistics on one line.
 *
 * usage: xsk_receiver IFACE [RING [BUSY_POLL_US]]
 *        RING: fill and RX ring entries, default 2048; BUSY_POLL_US: microseconds to keep polling an empty RX ring
 *        before sleeping in poll(2), default 0 (sleep at once), as the processor's --busy-poll.
 * build: gcc -O2 -o xsk_receiver xsk_receiver.c
 */
#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif

#define FRAME 4096u
#define FRAMES 8192u

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static void die(const char *what) { fprintf(stderr, "%s: %s\n", what, strerror(errno)); exit(1); }

static long bpf(int cmd, union bpf_attr *attr) { return syscall(__NR_bpf, cmd, attr, sizeof(*attr)); }

struct ring {
    uint32_t *producer, *consumer, mask, size;
    void *desc;
};

static void map_ring(int fd, struct xdp_ring_offset *off, uint32_t entries, size_t esize, off_t pgoff, struct ring *r)
{
    size_t len = off->desc + entries * esize;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
    if (m == MAP_FAILED)
        die("mmap ring");
    r->producer = (uint32_t *)(m + off->producer);
    r->consumer = (uint32_t *)(m + off->consumer);
    r->desc = m + off->desc;
    r->mask = entries - 1;
    r->size = entries;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s IFACE [RING [BUSY_POLL_US]]\n", argv[0]);
        return 2;
    }
    uint32_t ring = argc > 2 ? (uint32_t)atoi(argv[2]) : 2048;
    long busy_poll_ns = argc > 3 ? atol(argv[3]) * 1000L : 0;
    int ifindex = if_nametoindex(argv[1]);
    if (!ifindex)
        die("if_nametoindex");

    /* XSKMAP with one slot (queue 0) and the program: r2 = ctx->rx_queue_index; redirect_map(map, r2, XDP_PASS). */
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_type = BPF_MAP_TYPE_XSKMAP;
    a.key_size = 4;
    a.value_size = 4;
    a.max_entries = 1;
    int map = bpf(BPF_MAP_CREATE, &a);
    if (map < 0)
        die("BPF_MAP_CREATE");
    struct bpf_insn prog[] = {
        { .code = BPF_LDX | BPF_W | BPF_MEM, .dst_reg = 2, .src_reg = 1, .off = 16 },
        { .code = BPF_LD | BPF_DW | BPF_IMM, .dst_reg = 1, .src_reg = BPF_PSEUDO_MAP_FD, .imm = map },
        { 0 },
        { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 3, .imm = XDP_PASS },
        { .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_redirect_map },
        { .code = BPF_JMP | BPF_EXIT },
    };
    char log[4096] = "";
    memset(&a, 0, sizeof(a));
    a.prog_type = BPF_PROG_TYPE_XDP;
    a.insns = (uintptr_t)prog;
    a.insn_cnt = sizeof(prog) / sizeof(prog[0]);
    a.license = (uintptr_t)"Dual MIT/GPL";
    a.log_buf = (uintptr_t)log;
    a.log_size = sizeof(log);
    a.log_level = 1;
    int pfd = bpf(BPF_PROG_LOAD, &a);
    if (pfd < 0) {
        fprintf(stderr, "%s", log);
        die("BPF_PROG_LOAD");
    }
    memset(&a, 0, sizeof(a));
    a.link_create.prog_fd = pfd;
    a.link_create.target_ifindex = ifindex;
    a.link_create.attach_type = BPF_XDP;
    int link = bpf(BPF_LINK_CREATE, &a);
    if (link < 0)
        die("BPF_LINK_CREATE");

    int fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket(AF_XDP)");
    void *area = mmap(NULL, (size_t)FRAMES * FRAME, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (area == MAP_FAILED)
        die("mmap umem");
    struct xdp_umem_reg reg = { .addr = (uintptr_t)area, .len = (uint64_t)FRAMES * FRAME, .chunk_size = FRAME };
    if (setsockopt(fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg)))
        die("XDP_UMEM_REG");
    uint32_t comp = 64;
    if (setsockopt(fd, SOL_XDP, XDP_UMEM_FILL_RING, &ring, sizeof(ring)) ||
        setsockopt(fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &comp, sizeof(comp)) ||
        setsockopt(fd, SOL_XDP, XDP_RX_RING, &ring, sizeof(ring)))
        die("ring sizes");
    struct xdp_mmap_offsets off;
    socklen_t len = sizeof(off);
    if (getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &len))
        die("XDP_MMAP_OFFSETS");
    struct ring fill, rx;
    map_ring(fd, &off.fr, ring, sizeof(uint64_t), XDP_UMEM_PGOFF_FILL_RING, &fill);
    map_ring(fd, &off.rx, ring, sizeof(struct xdp_desc), XDP_PGOFF_RX_RING, &rx);
    struct sockaddr_xdp sa = { .sxdp_family = AF_XDP, .sxdp_ifindex = ifindex, .sxdp_queue_id = 0, .sxdp_flags = XDP_COPY };
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
        die("bind");
    uint32_t key = 0;
    memset(&a, 0, sizeof(a));
    a.map_fd = map;
    a.key = (uintptr_t)&key;
    a.value = (uintptr_t)&fd;
    if (bpf(BPF_MAP_UPDATE_ELEM, &a))
        die("BPF_MAP_UPDATE_ELEM");

    /* The fill ring starts full; every received frame goes straight back into it (drop). */
    uint64_t *fq = fill.desc;
    for (uint32_t i = 0; i < ring; i++)
        fq[i & fill.mask] = (uint64_t)i * FRAME;
    __atomic_store_n(fill.producer, ring, __ATOMIC_RELEASE);

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    printf("ready\n");
    fflush(stdout);
    uint64_t received = 0;
    struct xdp_desc *rq = rx.desc;
    uint32_t rx_cons = 0, fill_prod = ring;
    long idle_since = -1;
    while (!stop) {
        uint32_t avail = __atomic_load_n(rx.producer, __ATOMIC_ACQUIRE) - rx_cons;
        if (avail == 0) {
            if (busy_poll_ns > 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                long now = ts.tv_sec * 1000000000L + ts.tv_nsec;
                if (idle_since < 0)
                    idle_since = now;
                if (now - idle_since < busy_poll_ns)
                    continue;
            }
            idle_since = -1;
            struct pollfd p = { .fd = fd, .events = POLLIN };
            poll(&p, 1, 100);
            continue;
        }
        idle_since = -1;
        /* The fill ring has room for every frame taken from RX: together they never hold more than RING chunks. */
        for (uint32_t i = 0; i < avail; i++)
            fq[(fill_prod + i) & fill.mask] = rq[(rx_cons + i) & rx.mask].addr & ~(uint64_t)(FRAME - 1);
        rx_cons += avail;
        __atomic_store_n(rx.consumer, rx_cons, __ATOMIC_RELEASE);
        fill_prod += avail;
        __atomic_store_n(fill.producer, fill_prod, __ATOMIC_RELEASE);
        received += avail;
    }
    struct xdp_statistics st;
    len = sizeof(st);
    memset(&st, 0, sizeof(st));
    getsockopt(fd, SOL_XDP, XDP_STATISTICS, &st, &len);
    printf("received %llu rx_dropped %llu rx_invalid_descs %llu rx_ring_full %llu rx_fill_ring_empty_descs %llu\n",
           (unsigned long long)received, (unsigned long long)st.rx_dropped, (unsigned long long)st.rx_invalid_descs,
           (unsigned long long)st.rx_ring_full, (unsigned long long)st.rx_fill_ring_empty_descs);
    close(fd);
    close(link);
    return 0;
}

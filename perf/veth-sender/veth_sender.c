/*
 * veth_sender: sends N copies of one 64-byte UDP frame out of an interface through an AF_PACKET socket with
 * sendmmsg (qdisc bypassed), as fast as it can or at a given rate, and prints how long it took. Used to measure
 * the packet processor's drivers on a veth pair (see perf/RESULTS-packet-processor.md).
 *
 * usage: veth_sender IFACE DST_MAC SRC_IP DST_IP PORT COUNT [PPS]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static uint16_t checksum(const void *data, int len)
{
    const uint16_t *p = data;
    uint32_t sum = 0;
    for (; len > 1; len -= 2)
        sum += *p++;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: %s IFACE DST_MAC SRC_IP DST_IP PORT COUNT [PPS]\n", argv[0]);
        return 2;
    }
    unsigned ifindex = if_nametoindex(argv[1]);
    if (!ifindex) {
        perror("if_nametoindex");
        return 1;
    }
    unsigned char frame[64] = { 0 };
    unsigned m[6];
    if (sscanf(argv[2], "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) {
        fprintf(stderr, "bad MAC %s\n", argv[2]);
        return 2;
    }
    for (int i = 0; i < 6; i++)
        frame[i] = (unsigned char)m[i];
    memcpy(frame + 6, "\x02\x00\x00\x00\x00\x02", 6);
    frame[12] = 0x08;
    frame[13] = 0x00;
    struct iphdr *ip = (struct iphdr *)(frame + 14);
    ip->version = 4;
    ip->ihl = 5;
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons(64 - 14);
    inet_pton(AF_INET, argv[3], &ip->saddr);
    inet_pton(AF_INET, argv[4], &ip->daddr);
    ip->check = checksum(ip, 20);
    struct udphdr *udp = (struct udphdr *)(frame + 34);
    udp->source = htons(9);
    udp->dest = htons((uint16_t)atoi(argv[5]));
    udp->len = htons(64 - 34);
    long count = atol(argv[6]);
    double pps = argc > 7 ? atof(argv[7]) : 0;

    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    int one = 1;
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    struct sockaddr_ll addr = { .sll_family = AF_PACKET, .sll_ifindex = (int)ifindex, .sll_halen = 6 };
    memcpy(addr.sll_addr, frame, 6);
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = frame;
        iov[i].iov_len = sizeof frame;
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &addr;
        msgs[i].msg_hdr.msg_namelen = sizeof addr;
    }
    long sent = 0, failed = 0;
    double start = now();
    while (sent < count) {
        int n = count - sent < BATCH ? (int)(count - sent) : BATCH;
        int r = sendmmsg(fd, msgs, (unsigned)n, 0);
        if (r <= 0) {
            failed++;
            continue; /* ENOBUFS: the device queue is full; try again */
        }
        sent += r;
        if (pps > 0)
            while (now() - start < sent / pps)
                ;
    }
    double elapsed = now() - start;
    printf("sent %ld frames in %.3f s: %.3f Mpps (%ld retries)\n", sent, elapsed, sent / elapsed / 1e6, failed);
    close(fd);
    return 0;
}

/*
 * bench-kdump.c: the same list of random 8-byte kernel-VA reads through libkvm.so
 * (kvm_read2) and libkdumpfile (kdump_read KDUMP_KVADDR), in one process, no ctypes.
 *
 * Build (from /work/main, after `cargo build --release`; needs libkdumpfile-dev):
 *   gcc -O2 -Wall -o /tmp/bench-kdump scripts/real-dumps/bench-kdump.c \
 *       -Iinclude -Ltarget/release -lkvm -Wl,-rpath,$PWD/target/release -lkdumpfile
 * Address list (the one check-kvm.py's bench mode uses; 100,000 direct-map addresses of
 * dumped pages, 90% on 512 hot pages):
 *   python3 scripts/real-dumps/check-kvm.py bench --addr-out /tmp/addrs.txt \
 *       --dump /work/realdumps/x86_64/x86_64-kaslr/vmcore.mdf-lzo-d31
 * Run:
 *   /tmp/bench-kdump /work/realdumps/x86_64/x86_64-kaslr/vmcore.mdf-lzo-d31 /tmp/addrs.txt [REPEATS]
 *
 * Prints the reads/s of each library (best of REPEATS passes over the list, default 5,
 * the two libraries interleaved pass by pass), their ratio, the number of reads whose
 * bytes differ between the two and the failures of each.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KVM_NO_NLIST
#include "kvm.h"
#include <libkdumpfile/kdumpfile.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s DUMP ADDRFILE [REPEATS [LIBKDUMPFILE_CACHE_PAGES]]\n", argv[0]);
		return 2;
	}
	int reps = argc > 3 ? atoi(argv[3]) : 5;
	FILE *af = fopen(argv[2], "r");
	if (!af) {
		perror(argv[2]);
		return 1;
	}
	size_t n = 0, cap = 1 << 17;
	uint64_t *addr = malloc(cap * sizeof *addr);
	unsigned long long a;
	while (fscanf(af, "%llx", &a) == 1) {
		if (n == cap)
			addr = realloc(addr, (cap *= 2) * sizeof *addr);
		addr[n++] = a;
	}
	fclose(af);

	char errbuf[KVM_ERRBUF_SIZE];
	double t0 = now();
	kvm_t *kd = kvm_open2(NULL, argv[1], O_RDONLY, errbuf, NULL);
	double t_kvm_open = now() - t0;
	if (!kd) {
		fprintf(stderr, "kvm_open2: %s\n", errbuf);
		return 1;
	}
	t0 = now();
	kdump_ctx_t *ctx = kdump_new();
	int fd = open(argv[1], O_RDONLY);
	if (!ctx || fd < 0 || kdump_open_fd(ctx, fd) != KDUMP_OK) {
		fprintf(stderr, "kdump_open_fd: %s\n", ctx ? kdump_get_err(ctx) : "kdump_new");
		return 1;
	}
	/* QEMU-written kdump files carry no architecture name; harmless on makedumpfile's. */
	kdump_set_string_attr(ctx, "arch.name", "x86_64");
	if (kdump_set_string_attr(ctx, "addrxlat.ostype", "linux") != KDUMP_OK) {
		fprintf(stderr, "addrxlat.ostype: %s\n", kdump_get_err(ctx));
		return 1;
	}
	/* Optional 4th argument: libkdumpfile's cache in pages, to match
	 * libkvm's (16 MiB of decompressed pages: 4096 pages of 4 KiB). */
	if (argc > 4 && kdump_set_number_attr(ctx, "cache.size", strtoul(argv[4], NULL, 0)) != KDUMP_OK) {
		fprintf(stderr, "cache.size: %s\n", kdump_get_err(ctx));
		return 1;
	}
	double t_kdf_open = now() - t0;

	/* agreement pass (also warms both libraries' page tables / caches equally) */
	size_t mism = 0, f1 = 0, f2 = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t b1 = 0, b2 = 0;
		size_t len = 8;
		ssize_t r = kvm_read2(kd, addr[i], &b1, 8);
		kdump_status s = kdump_read(ctx, KDUMP_KVADDR, addr[i], &b2, &len);
		f1 += r != 8;
		f2 += s != KDUMP_OK;
		mism += r == 8 && s == KDUMP_OK && b1 != b2;
	}

	double best1 = 1e9, best2 = 1e9;
	volatile uint64_t sink = 0;
	for (int rep = 0; rep < reps; rep++) {
		uint64_t b;
		t0 = now();
		for (size_t i = 0; i < n; i++) {
			kvm_read2(kd, addr[i], &b, 8);
			sink += b;
		}
		double t = now() - t0;
		if (t < best1)
			best1 = t;
		t0 = now();
		for (size_t i = 0; i < n; i++) {
			size_t len = 8;
			kdump_read(ctx, KDUMP_KVADDR, addr[i], &b, &len);
			sink += b;
		}
		t = now() - t0;
		if (t < best2)
			best2 = t;
	}
	printf("%zu addresses, best of %d passes\n", n, reps);
	printf("open: libkvm %.4f s, libkdumpfile %.4f s\n", t_kvm_open, t_kdf_open);
	printf("libkvm       %10.0f reads/s (%.3f us/read)\n", n / best1, best1 / n * 1e6);
	printf("libkdumpfile %10.0f reads/s (%.3f us/read)\n", n / best2, best2 / n * 1e6);
	printf("ratio libkvm/libkdumpfile rate: %.2fx\n", best2 / best1);
	printf("differing bytes: %zu; failures: libkvm %zu, libkdumpfile %zu\n", mism, f1, f2);
	kvm_close(kd);
	kdump_free(ctx);
	close(fd);
	return 0;
}

/*
 * kvmdump: a tiny kgdb-style reader of FreeBSD kernel crash dumps, written
 * against the libkvm C API (<kvm.h>) only.
 *
 * Usage: kvmdump KERNEL CORE WHAT [LENGTH]
 *
 * KERNEL may be `-` for none: a Linux vmcore's symbols then come from the
 * dump itself (kvm_open2 with a NULL execfile).
 *
 * WHAT is a kernel symbol name (resolved with kvm_nlist2) or a 0x-prefixed
 * hexadecimal kernel virtual address.  LENGTH (decimal or 0x hex, at most
 * 1 MiB) is the number of bytes to read; it defaults to 64.  The bytes are
 * printed as a classic hex dump, 16 bytes per line.
 *
 * Build (after `cargo build`):
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -I include \
 *      examples/kvmdump.c -L target/debug -lkvm \
 *      -Wl,-rpath,$PWD/target/debug -o kvmdump
 *
 * Exit status: 0 on success (also after a short read), 1 on an error,
 * 2 on a usage error.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm.h"

#ifndef _POSIX2_LINE_MAX
#define _POSIX2_LINE_MAX 2048
#endif

/* The library writes up to KVM_ERRBUF_SIZE bytes into errbuf. */
#if _POSIX2_LINE_MAX >= KVM_ERRBUF_SIZE
#define ERRBUF_SIZE _POSIX2_LINE_MAX
#else
#define ERRBUF_SIZE KVM_ERRBUF_SIZE
#endif

#define DEFAULT_LENGTH 64
#define MAX_LENGTH (1024 * 1024)

static const char *progname = "kvmdump";

static void
usage(void)
{
	fprintf(stderr, "usage: %s KERNEL CORE SYMBOL|0xADDRESS [LENGTH]\n",
	    progname);
	exit(2);
}

/*
 * Parses all of s as an unsigned number: hexadecimal digits if hex, else
 * decimal digits (no sign, space, prefix or octal).
 */
static int
parse_digits(const char *s, int hex, unsigned long long *out)
{
	const char *digits = hex ? "0123456789abcdefABCDEF" : "0123456789";
	unsigned long long v;

	if (*s == '\0' || s[strspn(s, digits)] != '\0')
		return (-1);
	errno = 0;
	v = strtoull(s, NULL, hex ? 16 : 10);
	if (errno != 0)
		return (-1);
	*out = v;
	return (0);
}

static int
is_hex_address(const char *s)
{
	return (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'));
}

/* LENGTH: decimal or 0x hex. */
static int
parse_length(const char *s, unsigned long long *out)
{
	if (is_hex_address(s))
		return (parse_digits(s + 2, 1, out));
	return (parse_digits(s, 0, out));
}

static void
hexdump(unsigned long long addr, const unsigned char *buf, size_t len)
{
	size_t off, i;

	for (off = 0; off < len; off += 16) {
		size_t n = len - off < 16 ? len - off : 16;

		printf("0x%016llx  ", addr + (unsigned long long)off);
		for (i = 0; i < 16; i++) {
			if (i < n)
				printf("%02x ", buf[off + i]);
			else
				fputs("   ", stdout);
		}
		fputs(" |", stdout);
		for (i = 0; i < n; i++) {
			unsigned char c = buf[off + i];
			putchar(c >= 0x20 && c <= 0x7e ? c : '.');
		}
		puts("|");
	}
}

int
main(int argc, char **argv)
{
	char errbuf[ERRBUF_SIZE];
	const char *what;
	unsigned long long addr, length = DEFAULT_LENGTH;
	unsigned char *buf;
	kvm_t *kd;
	ssize_t n;
	int status = 1;

	if (argc != 4 && argc != 5)
		usage();
	what = argv[3];
	if (argc == 5 && (parse_length(argv[4], &length) != 0 ||
	    length == 0 || length > MAX_LENGTH)) {
		fprintf(stderr, "%s: invalid LENGTH '%s' (1 to %d bytes)\n",
		    progname, argv[4], MAX_LENGTH);
		return (2);
	}
	if (is_hex_address(what) && parse_digits(what + 2, 1, &addr) != 0) {
		fprintf(stderr, "%s: invalid address '%s'\n", progname, what);
		return (2);
	}

	errbuf[0] = '\0';
	kd = kvm_open2(strcmp(argv[1], "-") == 0 ? NULL : argv[1], argv[2],
	    O_RDONLY, errbuf, NULL);
	if (kd == NULL) {
		fprintf(stderr, "%s: %s\n", progname, errbuf);
		return (1);
	}

	printf("native: %d\n", kvm_native(kd));

	if (!is_hex_address(what)) {
		struct kvm_nlist nl[2];
		int missing;

		memset(nl, 0, sizeof(nl));
		nl[0].n_name = what;
		nl[1].n_name = NULL;
		missing = kvm_nlist2(kd, nl);
		if (missing < 0) {
			fprintf(stderr, "%s: kvm_nlist2: %s\n", progname,
			    kvm_geterr(kd));
			goto out;
		}
		if (missing > 0) {
			fprintf(stderr, "%s: %s: symbol not found\n", progname,
			    what);
			goto out;
		}
		addr = nl[0].n_value;
		printf("%s = 0x%016llx (n_type 0x%02x)\n", what,
		    (unsigned long long)addr, (unsigned)nl[0].n_type);
	}

	buf = malloc((size_t)length);
	if (buf == NULL) {
		fprintf(stderr, "%s: out of memory\n", progname);
		goto out;
	}
	n = kvm_read2(kd, (kvaddr_t)addr, buf, (size_t)length);
	if (n < 0) {
		fprintf(stderr, "%s: kvm_read2: %s\n", progname,
		    kvm_geterr(kd));
	} else {
		hexdump(addr, buf, (size_t)n);
		if ((unsigned long long)n < length)
			printf("(short read: %lld of %llu bytes; "
			    "the core file ends early)\n", (long long)n, length);
		status = 0;
	}
	free(buf);
out:
	kvm_close(kd);
	if (fflush(stdout) != 0 && status == 0) {
		perror(progname);
		status = 1;
	}
	return (status);
}

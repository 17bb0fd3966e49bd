/*
 * libfbsdvmcore's API (fvc.h) from C, as lldb's FreeBSDKernel plugin calls
 * it: fvc_open(kernel, core, NULL, NULL, NULL), fvc_read, fvc_geterr,
 * fvc_close; and with a resolver and its closure.  Usage: fvc_test KERNEL
 * CORE ADDR... (hex).  Prints what it reads, one fact a line, for
 * tests/fvc.rs to compare with the fixture's model:
 *   kerndisp N / native N / pages COUNT BYTES / read ADDR HEX (16 bytes)
 *   / fail ADDR TEXT / resolved N
 * Checks of its own (libfbsdvmcore's tests/: fvc_close(NULL),
 * fvc_geterr(NULL), fvc_open's refusals) print "FAIL: ..." and exit 1.
 */
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fvc.h>

/* fvc.h's layout is libfbsdvmcore's (LP64). */
#if defined(__LP64__)
_Static_assert(offsetof(struct fvc_page, kp_prot) == 32, "kp_prot");
_Static_assert(offsetof(struct fvc_page, kp_offset) == 40, "kp_offset");
_Static_assert(sizeof(struct fvc_page) == 56, "struct fvc_page");
#endif

static int failed;

static void
fail(const char *what)
{
	printf("FAIL: %s\n", what);
	failed = 1;
}

/* The resolver's closure: how often it was called. */
struct names {
	int calls;
};

static int
count_pages(struct fvc_page *p, void *closure)
{
	unsigned long long *c = closure;

	if (p->kp_version != LIBFVC_WALK_PAGES_VERSION)
		fail("kp_version");
	c[0]++;
	c[1] += p->kp_len;
	return (1);
}

static int
stop_at_first(struct fvc_page *p, void *closure)
{
	(void)p;
	++*(int *)closure;
	return (0);
}

/* Resolves nothing: the caller's symbols are its own business. */
static int
resolve_none(const char *name, fvc_addr_t *addr, void *closure)
{
	struct names *n = closure;

	(void)name;
	(void)addr;
	n->calls++;
	return (1);
}

/*
 * Resolves the names the environment gives (the test passes the kernel's
 * own values), as a debugger resolves them from its symbol files.
 */
static int
resolve_with(const char *name, fvc_addr_t *addr, void *closure)
{
	struct names *n = closure;
	const char *v = getenv(name);

	n->calls++;
	if (v == NULL)
		return (1);
	*addr = strtoull(v, NULL, 16);
	return (0);
}

static void
negative_tests(const char *kernel)
{
	char errbuf[_POSIX2_LINE_MAX];
	FILE *f;

	/* libfbsdvmcore tests/fvc_close_test.c */
	errno = 0;
	if (fvc_close(NULL) != -1 || errno != EINVAL)
		fail("fvc_close(NULL) is -1 with EINVAL");
	/* tests/fvc_geterr_test.c */
	if (fvc_geterr(NULL) == NULL || strcmp(fvc_geterr(NULL), "") != 0)
		fail("fvc_geterr(NULL) is \"\"");
	/* tests/fvc_open_test.c: refusals, with and without an errbuf. */
	if (fvc_open(NULL, "/nonexistent", NULL, NULL, NULL) != NULL)
		fail("fvc_open(NULL, /nonexistent) with no errbuf");
	errbuf[0] = '\0';
	if (fvc_open(NULL, "/nonexistent", errbuf, NULL, NULL) != NULL ||
	    strcmp(errbuf, "exec file must be specified") != 0)
		fail("fvc_open without an exec file");
	errbuf[0] = '\0';
	if (fvc_open(kernel, NULL, errbuf, NULL, NULL) != NULL ||
	    strcmp(errbuf, "core file must be specified") != 0)
		fail("fvc_open without a core file");
	errbuf[0] = '\0';
	if (fvc_open("/nonexistent", "/dev/zero", errbuf, NULL, NULL) != NULL ||
	    errbuf[0] == '\0')
		fail("fvc_open(/nonexistent, /dev/zero)");
	errbuf[0] = '\0';
	if (fvc_open(kernel, "/dev/zero", errbuf, NULL, NULL) != NULL ||
	    strstr(errbuf, "/dev/zero") == NULL)
		fail("fvc_open of a device names it");
	f = fopen("fvc-some-file", "w");
	if (f == NULL) {
		fail("create fvc-some-file");
		return;
	}
	fputs("this is a text file\n", f);
	fclose(f);
	errbuf[0] = '\0';
	if (fvc_open("fvc-some-file", kernel, errbuf, NULL, NULL) != NULL ||
	    strstr(errbuf, "fvc-some-file") == NULL)
		fail("fvc_open of a text file as the kernel");
	errbuf[0] = '\0';
	if (fvc_open(kernel, "fvc-some-file", errbuf, NULL, NULL) != NULL ||
	    strstr(errbuf, "fvc-some-file") == NULL)
		fail("fvc_open of a text file as the core");
	unlink("fvc-some-file");
}

int
main(int argc, char **argv)
{
	char errbuf[_POSIX2_LINE_MAX];
	unsigned char buf[16];
	unsigned long long pages[2] = { 0, 0 };
	struct names names = { 0 };
	fvc_t *kd;
	int i, stops = 0;

	if (argc < 3) {
		fprintf(stderr, "usage: fvc_test KERNEL CORE ADDR...\n");
		return (2);
	}
	negative_tests(argv[1]);
	/* As lldb: no errbuf, no resolver, no closure. */
	kd = fvc_open(argv[1], argv[2], NULL, NULL, NULL);
	if (kd == NULL) {
		fail("fvc_open(kernel, core, NULL, NULL, NULL)");
		return (1);
	}
	printf("kerndisp %zd\n", fvc_kerndisp(kd));
	printf("native %d\n", fvc_native(kd));
	if (fvc_walk_pages(kd, count_pages, pages) != 1)
		fail("fvc_walk_pages");
	printf("pages %llu %llu\n", pages[0], pages[1]);
	if (fvc_walk_pages(kd, stop_at_first, &stops) != 0 || stops != 1)
		fail("a stopped fvc_walk_pages is 0");
	for (i = 3; i < argc; i++) {
		fvc_addr_t a = strtoull(argv[i], NULL, 16);
		ssize_t n = fvc_read(kd, a, buf, sizeof(buf));

		if (n == (ssize_t)sizeof(buf)) {
			printf("read %llx ", (unsigned long long)a);
			for (size_t j = 0; j < sizeof(buf); j++)
				printf("%02x", buf[j]);
			printf("\n");
		} else if (n == -1) {
			printf("fail %llx %s\n", (unsigned long long)a,
			    fvc_geterr(kd));
		} else {
			fail("fvc_read short");
		}
	}
	/*
	 * A successful read leaves the last error as it was (what
	 * libfbsdvmcore's fvc_geterr_test means to check): the last address
	 * given must fail, the first must read.
	 */
	if (argc > 4) {
		char first[_POSIX2_LINE_MAX];

		if (fvc_read(kd, strtoull(argv[argc - 1], NULL, 16), buf, 1) != -1)
			fail("the last address reads");
		snprintf(first, sizeof(first), "%s", fvc_geterr(kd));
		if (fvc_read(kd, strtoull(argv[3], NULL, 16), buf, 1) != 1)
			fail("the first address does not read");
		if (first[0] == '\0' || strcmp(first, fvc_geterr(kd)) != 0)
			fail("a successful read changed fvc_geterr()");
	}
	if (fvc_close(kd) != 0)
		fail("fvc_close");
	/* With a resolver and its closure. */
	errbuf[0] = '\0';
	kd = fvc_open(argv[1], argv[2], errbuf, resolve_with, &names);
	if (kd == NULL) {
		printf("resolver-open %s\n", errbuf);
	} else {
		if (fvc_read(kd, strtoull(argc > 3 ? argv[3] : "0", NULL, 16),
		    buf, 1) < 0 && argc > 3)
			printf("resolver-read %s\n", fvc_geterr(kd));
		fvc_close(kd);
	}
	printf("resolved %d\n", names.calls > 0);
	names.calls = 0;
	kd = fvc_open(argv[1], argv[2], errbuf, resolve_none, &names);
	printf("resolve-none %s\n", kd == NULL ? "refused" : "opened");
	if (kd != NULL)
		fvc_close(kd);
	return (failed);
}

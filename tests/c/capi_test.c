/*
 * capi_test: checks every entry point of the libkvm-compatible C API
 * (include/kvm.h) against a kernel image, a crash dump and a file of
 * expectations.  Run by tests/capi.rs, linked once with libkvm.so and once
 * with libkvm.a.
 *
 * Usage: capi_test KERNEL CORE EXPECTFILE
 *
 * Prints one line per failed check to stdout ("FAIL: what: got ...,
 * expected ..."), then "N passed, N failed" on a line of its own; exits 0
 * only if no check failed (1 otherwise, 2 on a usage error).
 *
 * EXPECTFILE format: one directive per line, fields separated by white
 * space.  Blank lines and lines starting with '#' are ignored.  HEX values
 * are hexadecimal without "0x"; LEN and N are decimal; HEXBYTES is the
 * expected contents as lowercase hex pairs with no spaces (2 * LEN digits).
 *
 *   native N
 *       kvm_native(kd) == N.
 *   sym NAME HEXVALUE NTYPE
 *       kvm_nlist2() finds NAME with n_value HEXVALUE and n_type NTYPE
 *       (decimal); kvm_nlist() (struct nlist) gives the same, with n_other
 *       and n_desc cleared to 0 as FreeBSD's kvm_nlist() does.
 *   nosym NAME
 *       NAME is not a symbol: kvm_nlist2() and kvm_nlist() return 1 for a
 *       list holding only NAME and set its n_type and n_value to 0.
 *   read HEXVA LEN HEXBYTES
 *       kvm_read2() and kvm_read() of LEN bytes at HEXVA return LEN and
 *       those bytes (and write nothing past LEN bytes of the buffer).
 *   fail HEXVA LEN SUBSTRING...
 *       kvm_read2() and kvm_read() of LEN bytes at HEXVA return -1 and
 *       kvm_geterr() contains SUBSTRING: the rest of the line after LEN and
 *       one space (it may contain spaces and parentheses).
 *   phys HEXPA LEN HEXBYTES
 *       kvm_read_phys() of LEN bytes at physical HEXPA returns LEN and those
 *       bytes.
 *   physfail HEXPA LEN SUBSTRING...
 *       kvm_read_phys() returns -1 and kvm_geterr() contains SUBSTRING.
 *   vtop HEXVA HEXPA
 *       kvm_vtop() of HEXVA returns 0 and stores HEXPA.
 *   vtopfail HEXVA LEN SUBSTRING...
 *       kvm_vtop() of HEXVA returns -1 and kvm_geterr() contains SUBSTRING
 *       (LEN is ignored).
 *   threads HEXVA LEN HEXBYTES
 *       4 threads each call kvm_read2() 20000 times for that range on the
 *       same handle; every call returns LEN and those bytes.
 *   resolve NAME HEXVALUE
 *       An entry of the symbol table for a kvm_open2() resolver.  After all
 *       other lines, the dump is opened again with a resolver looking names
 *       up in this table (it must hold everything the backend needs, e.g.
 *       KPML4phys and kernbase for an amd64 full dump).  Then kvm_open2()
 *       succeeds, the resolver is called, kvm_nlist2() gives n_value HEXVALUE and n_type
 *       N_DATA|N_EXT for each entry, names outside the table (including the
 *       sym names not in it) are not found, and the read/fail lines give the
 *       same results through that handle.
 *
 *   walkcount N
 *       kvm_walk_pages() returns 1 after N callbacks, each with kp_version
 *       LIBKVM_WALK_PAGES_VERSION; a callback returning 0 at once stops the
 *       walk: kvm_walk_pages() returns 0 after exactly one call.
 *   walkpage I HEXPADDR HEXKMAP HEXDMAP PROT OFFSET LEN
 *       The I-th page (from 0) that kvm_walk_pages() reports has these
 *       kp_paddr, kp_kmap_vaddr, kp_dmap_vaddr, kp_prot (decimal),
 *       kp_offset (decimal, -1 when not in the dump) and kp_len (decimal).
 *
 * After all sym and nosym lines, one kvm_nlist2() call over all their names
 * (the list ended by a NULL n_name) must return the number of nosym lines.
 *
 * Checks independent of EXPECTFILE: errbuf is left untouched by a
 * successful kvm_open2() and holds a message naming the path on failure;
 * kvm_open2() refuses the kernel as the core and bad flags; kvm_openfiles()
 * and kvm_open() (which reports a failure to open to stderr as
 * "capi_test: ...", but not later read errors); per-thread kvm_geterr()
 * text; O_WRONLY refused as by FreeBSD; NULL
 * handles for kvm_close(), kvm_geterr() and kvm_native(); zero-length
 * reads; kvm_write() fails as read-only; kvm_kerndisp() is 0; kvm_nlist2()
 * of an empty list and at an "" terminator.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "kvm.h"

#define NTHREADS 4
#define NITER 20000
#define GARBAGE_TYPE 0xa5
#define GARBAGE_VALUE 0xdeadbeefdeadbeefULL
/* Bytes past the requested length that a read must leave alone. */
#define GUARD 16
#define GUARD_BYTE 0xcc

static unsigned long npassed, nfailed;

#ifdef __GNUC__
#define PRINTFLIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTFLIKE(f, a)
#endif

static void pass(void)
{
	npassed++;
}

/* Counts one check: passes when ok, else prints "FAIL: " and the message. */
static int check(int ok, const char *fmt, ...) PRINTFLIKE(2, 3);

static int check(int ok, const char *fmt, ...)
{
	va_list ap;

	if (ok) {
		npassed++;
		return 1;
	}
	nfailed++;
	fputs("FAIL: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	return 0;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL) {
		perror("capi_test: malloc");
		exit(2);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = xmalloc(strlen(s) + 1);

	return strcpy(p, s);
}

/* ---- The expectations ---------------------------------------------- */

struct sym {
	char *name;
	uint64_t value;
	unsigned type;
	int found; /* 0 for nosym lines */
};

struct range {
	uint64_t va;
	size_t len;
	unsigned char *bytes; /* read: expected contents */
	char *substr;         /* fail: expected part of kvm_geterr() */
};

static struct sym *syms;
static size_t nsyms, capsyms;
static struct range *ranges;
static size_t nranges, capranges;
static struct sym *table; /* resolve lines */
static size_t ntable, captable;

static void *grow(void *p, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return p;
	*cap = *cap ? 2 * *cap : 16;
	p = realloc(p, *cap * size);
	if (p == NULL) {
		perror("capi_test: realloc");
		exit(2);
	}
	return p;
}

static struct sym *add_sym(struct sym **v, size_t *n, size_t *cap)
{
	*v = grow(*v, cap, *n, sizeof(**v));
	return &(*v)[(*n)++];
}

/* ---- Helpers --------------------------------------------------------- */

static const char *nlname(const char *s)
{
	return s == NULL ? "(null)" : s;
}

/* Hex dump of up to 16 bytes at p (of n), for messages. */
static const char *hexstr(const unsigned char *p, size_t n)
{
	static char out[2 * 16 + 4];
	size_t i, m = n < 16 ? n : 16;

	for (i = 0; i < m; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
	strcpy(out + 2 * m, n > m ? "..." : "");
	return out;
}

/* Compares got with want; on a difference, says where. */
static void check_bytes(const char *what, uint64_t va, const unsigned char *got,
    const unsigned char *want, size_t len)
{
	size_t i;

	for (i = 0; i < len && got[i] == want[i]; i++)
		;
	if (i == len) {
		pass();
		return;
	}
	{
		char g[40];

		strcpy(g, hexstr(got + i, len - i));
		check(0, "%s(0x%llx, %zu) bytes: got %s at offset %zu, expected %s",
		    what, (unsigned long long)va, len, g, i,
		    hexstr(want + i, len - i));
	}
}

static int buf_is(const char *buf, size_t n, char c)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (buf[i] != c)
			return 0;
	return 1;
}

/* errbuf after a failed open: a non-empty string within the buffer. */
static int errbuf_is_message(const char *errbuf)
{
	return memchr(errbuf, '\0', KVM_ERRBUF_SIZE) != NULL && errbuf[0] != '\0';
}

/* ---- Symbols --------------------------------------------------------- */

static void check_nlist2_one(kvm_t *kd, const char *ctx, const char *name,
    int found, uint64_t value, unsigned type)
{
	struct kvm_nlist nl[2];
	int r;

	memset(nl, 0, sizeof(nl));
	nl[0].n_name = name;
	nl[0].n_type = GARBAGE_TYPE;
	nl[0].n_value = GARBAGE_VALUE;
	nl[1].n_name = NULL;
	r = kvm_nlist2(kd, nl);
	check(r == !found, "%skvm_nlist2(%s) returned: got %d, expected %d (%s)",
	    ctx, name, r, !found, r < 0 ? kvm_geterr(kd) : "");
	check(nl[0].n_value == value,
	    "%skvm_nlist2(%s) n_value: got 0x%llx, expected 0x%llx", ctx, name,
	    (unsigned long long)nl[0].n_value, (unsigned long long)value);
	check(nl[0].n_type == type, "%skvm_nlist2(%s) n_type: got %u, expected %u",
	    ctx, name, (unsigned)nl[0].n_type, type);
	check(nl[1].n_name == NULL,
	    "%skvm_nlist2(%s) terminator n_name: got %s, expected (null)", ctx,
	    name, nlname(nl[1].n_name));
}

static void check_nlist_one(kvm_t *kd, const char *ctx, const char *name,
    int found, uint64_t value, unsigned type)
{
	struct nlist nl[2];
	int r;

	/*
	 * FreeBSD's kvm_nlist() fails for non-native cores ("kvm_nlist of
	 * non-native vmcore"); this library documents that it fails only when
	 * a value does not fit in unsigned long.  Accept either there.
	 */
	memset(nl, 0, sizeof(nl));
	nl[0].n_name = name;
	nl[0].n_type = GARBAGE_TYPE;
	nl[0].n_other = 0x5a;
	nl[0].n_desc = 0x1234;
	nl[0].n_value = (unsigned long)GARBAGE_VALUE;
	nl[1].n_name = NULL;
	r = kvm_nlist(kd, nl);
	if (r == -1 && !kvm_native(kd)) {
		pass();
		return;
	}
	check(r == !found, "%skvm_nlist(%s) returned: got %d, expected %d (%s)",
	    ctx, name, r, !found, r < 0 ? kvm_geterr(kd) : "");
	check((uint64_t)nl[0].n_value == value,
	    "%skvm_nlist(%s) n_value: got 0x%lx, expected 0x%llx", ctx, name,
	    nl[0].n_value, (unsigned long long)value);
	check(nl[0].n_type == type, "%skvm_nlist(%s) n_type: got %u, expected %u",
	    ctx, name, (unsigned)nl[0].n_type, type);
	/* FreeBSD's kvm_nlist() sets n_other and n_desc to 0. */
	check(nl[0].n_other == 0, "%skvm_nlist(%s) n_other: got %d, expected 0",
	    ctx, name, (int)nl[0].n_other);
	check(nl[0].n_desc == 0, "%skvm_nlist(%s) n_desc: got %d, expected 0",
	    ctx, name, (int)nl[0].n_desc);
}

/* One kvm_nlist2() call over all sym and nosym names. */
static void check_nlist2_all(kvm_t *kd)
{
	struct kvm_nlist *nl = xmalloc((nsyms + 1) * sizeof(*nl));
	size_t i, missing = 0;
	int r;

	for (i = 0; i < nsyms; i++) {
		nl[i].n_name = syms[i].name;
		nl[i].n_type = GARBAGE_TYPE;
		nl[i].n_value = GARBAGE_VALUE;
		missing += !syms[i].found;
	}
	nl[nsyms].n_name = NULL;
	nl[nsyms].n_type = 0;
	nl[nsyms].n_value = 0;
	r = kvm_nlist2(kd, nl);
	check(r == (int)missing,
	    "kvm_nlist2(all %zu sym and nosym names) returned: got %d, expected %zu",
	    nsyms, r, missing);
	for (i = 0; i < nsyms; i++) {
		check(nl[i].n_value == syms[i].value && nl[i].n_type == syms[i].type,
		    "kvm_nlist2(all names) entry %s: got n_value 0x%llx n_type %u, "
		    "expected n_value 0x%llx n_type %u",
		    syms[i].name, (unsigned long long)nl[i].n_value,
		    (unsigned)nl[i].n_type, (unsigned long long)syms[i].value,
		    syms[i].type);
	}
	free(nl);
}

/* The list ends at an entry whose n_name is "": later entries are untouched. */
static void check_nlist2_empty_terminator(kvm_t *kd)
{
	const struct sym *found = NULL, *missing = NULL;
	struct kvm_nlist nl[3];
	size_t i;
	int r;

	for (i = 0; i < nsyms; i++) {
		if (syms[i].found && found == NULL)
			found = &syms[i];
		if (!syms[i].found && missing == NULL)
			missing = &syms[i];
	}
	if (found == NULL || missing == NULL)
		return;
	nl[0].n_name = found->name;
	nl[0].n_type = GARBAGE_TYPE;
	nl[0].n_value = GARBAGE_VALUE;
	nl[1].n_name = "";
	nl[1].n_type = GARBAGE_TYPE;
	nl[1].n_value = GARBAGE_VALUE;
	nl[2].n_name = missing->name;
	nl[2].n_type = GARBAGE_TYPE;
	nl[2].n_value = GARBAGE_VALUE;
	r = kvm_nlist2(kd, nl);
	check(r == 0, "kvm_nlist2({%s, \"\", %s}) returned: got %d, expected 0",
	    found->name, missing->name, r);
	check(nl[0].n_value == found->value,
	    "kvm_nlist2({%s, \"\", ...}) n_value: got 0x%llx, expected 0x%llx",
	    found->name, (unsigned long long)nl[0].n_value,
	    (unsigned long long)found->value);
	check(nl[2].n_type == GARBAGE_TYPE && nl[2].n_value == GARBAGE_VALUE,
	    "kvm_nlist2({..., \"\", %s}) entry after the \"\" terminator: got "
	    "n_type %u n_value 0x%llx, expected untouched (%u, 0x%llx)",
	    missing->name, (unsigned)nl[2].n_type,
	    (unsigned long long)nl[2].n_value, GARBAGE_TYPE, GARBAGE_VALUE);
}

/* ---- Reads ----------------------------------------------------------- */

static void check_read(kvm_t *kd, const char *ctx, const struct range *rg)
{
	unsigned char *buf = xmalloc(rg->len + GUARD);
	ssize_t r;
	int pass;

	for (pass = 0; pass < 2; pass++) {
		const char *fn = pass == 0 ? "kvm_read2" : "kvm_read";

		if (pass == 1 && rg->va > ULONG_MAX)
			break;
		memset(buf, GUARD_BYTE, rg->len + GUARD);
		if (pass == 0)
			r = kvm_read2(kd, rg->va, buf, rg->len);
		else
			r = kvm_read(kd, (unsigned long)rg->va, buf, rg->len);
		if (!check(r == (ssize_t)rg->len,
		    "%s%s(0x%llx, %zu) returned: got %zd, expected %zu (%s)", ctx,
		    fn, (unsigned long long)rg->va, rg->len, r, rg->len,
		    r < 0 ? kvm_geterr(kd) : "short read"))
			continue;
		{
			char what[64];

			snprintf(what, sizeof(what), "%s%s", ctx, fn);
			check_bytes(what, rg->va, buf, rg->bytes, rg->len);
		}
		{
			size_t i;

			for (i = 0; i < GUARD && buf[rg->len + i] == GUARD_BYTE; i++)
				;
			check(i == GUARD,
			    "%s%s(0x%llx, %zu) wrote past the length: got byte 0x%02x "
			    "at offset %zu, expected 0x%02x",
			    ctx, fn, (unsigned long long)rg->va, rg->len,
			    i < GUARD ? buf[rg->len + i] : 0, rg->len + i, GUARD_BYTE);
		}
	}
	free(buf);
}

/* kvm_read_phys() of a range (rg->va holds the physical address). */
static void check_phys(kvm_t *kd, const struct range *rg)
{
	unsigned char *buf = xmalloc(rg->len + 1);
	ssize_t r;

	r = kvm_read_phys(kd, rg->va, buf, rg->len);
	if (rg->bytes == NULL) {
		const char *err = kvm_geterr(kd);

		check(r == -1, "kvm_read_phys(0x%llx, %zu) returned: got %zd, expected -1",
		    (unsigned long long)rg->va, rg->len, r);
		check(err != NULL && strstr(err, rg->substr) != NULL,
		    "kvm_read_phys(0x%llx) kvm_geterr: got \"%s\", expected it to contain \"%s\"",
		    (unsigned long long)rg->va, nlname(err), rg->substr);
	} else if (check(r == (ssize_t)rg->len,
	    "kvm_read_phys(0x%llx, %zu) returned: got %zd, expected %zu (%s)",
	    (unsigned long long)rg->va, rg->len, r, rg->len,
	    r < 0 ? kvm_geterr(kd) : "short read")) {
		check_bytes("kvm_read_phys", rg->va, buf, rg->bytes, rg->len);
	}
	free(buf);
}

/* kvm_vtop() of va: want_pa, or a failure whose text contains substr. */
static void check_vtop(kvm_t *kd, uint64_t va, uint64_t want_pa, const char *substr)
{
	kpaddr_t pa = 0xdeadbeef;
	int r = kvm_vtop(kd, va, &pa);

	if (substr == NULL) {
		check(r == 0 && pa == want_pa,
		    "kvm_vtop(0x%llx): got %d and 0x%llx, expected 0 and 0x%llx (%s)",
		    (unsigned long long)va, r, (unsigned long long)pa,
		    (unsigned long long)want_pa, r ? kvm_geterr(kd) : "");
	} else {
		const char *err = kvm_geterr(kd);

		check(r == -1, "kvm_vtop(0x%llx) returned: got %d, expected -1",
		    (unsigned long long)va, r);
		check(err != NULL && strstr(err, substr) != NULL,
		    "kvm_vtop(0x%llx) kvm_geterr: got \"%s\", expected it to contain \"%s\"",
		    (unsigned long long)va, nlname(err), substr);
	}
}

static void check_fail(kvm_t *kd, const char *ctx, const struct range *rg)
{
	unsigned char *buf = xmalloc(rg->len);
	ssize_t r;
	const char *err;

	r = kvm_read2(kd, rg->va, buf, rg->len);
	err = kvm_geterr(kd);
	check(r == -1, "%skvm_read2(0x%llx, %zu) returned: got %zd, expected -1",
	    ctx, (unsigned long long)rg->va, rg->len, r);
	check(err != NULL && strstr(err, rg->substr) != NULL,
	    "%skvm_read2(0x%llx, %zu) kvm_geterr: got \"%s\", expected it to "
	    "contain \"%s\"",
	    ctx, (unsigned long long)rg->va, rg->len, nlname(err), rg->substr);
	if (rg->va <= ULONG_MAX) {
		r = kvm_read(kd, (unsigned long)rg->va, buf, rg->len);
		err = kvm_geterr(kd);
		check(r == -1, "%skvm_read(0x%llx, %zu) returned: got %zd, expected -1",
		    ctx, (unsigned long long)rg->va, rg->len, r);
		check(err != NULL && strstr(err, rg->substr) != NULL,
		    "%skvm_read(0x%llx, %zu) kvm_geterr: got \"%s\", expected it to "
		    "contain \"%s\"",
		    ctx, (unsigned long long)rg->va, rg->len, nlname(err), rg->substr);
	}
	free(buf);
}

struct thread_arg {
	kvm_t *kd;
	uint64_t va;
	size_t len;
	const unsigned char *want;
	long bad;        /* calls with a wrong result */
	ssize_t first_r; /* return value of the first bad call */
};

static void *reader(void *p)
{
	struct thread_arg *a = p;
	unsigned char *buf = xmalloc(a->len);
	long i;

	for (i = 0; i < NITER; i++) {
		ssize_t r;

		memset(buf, 0, a->len);
		r = kvm_read2(a->kd, a->va, buf, a->len);
		if (r != (ssize_t)a->len || memcmp(buf, a->want, a->len) != 0) {
			if (a->bad++ == 0)
				a->first_r = r;
		}
	}
	free(buf);
	return NULL;
}

static void check_threads(kvm_t *kd, const struct range *rg)
{
	pthread_t tid[NTHREADS];
	struct thread_arg arg[NTHREADS];
	int i, started[NTHREADS];

	for (i = 0; i < NTHREADS; i++) {
		int e;

		arg[i].kd = kd;
		arg[i].va = rg->va;
		arg[i].len = rg->len;
		arg[i].want = rg->bytes;
		arg[i].bad = 0;
		arg[i].first_r = 0;
		e = pthread_create(&tid[i], NULL, reader, &arg[i]);
		started[i] = e == 0;
		check(e == 0, "pthread_create: got %d (%s), expected 0", e, strerror(e));
	}
	for (i = 0; i < NTHREADS; i++) {
		if (!started[i])
			continue;
		pthread_join(tid[i], NULL);
		check(arg[i].bad == 0,
		    "thread %d: %d x kvm_read2(0x%llx, %zu) on one handle: got %ld "
		    "wrong results (first returned %zd), expected 0",
		    i, NITER, (unsigned long long)rg->va, rg->len, arg[i].bad,
		    arg[i].first_r);
	}
}

/* ---- Parsing --------------------------------------------------------- */

/* Next white-space-separated token of *p (NUL-terminated in place). */
static char *next_tok(char **p)
{
	char *s = *p, *t;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0') {
		*p = s;
		return NULL;
	}
	t = s;
	while (*s != '\0' && *s != ' ' && *s != '\t')
		s++;
	if (*s != '\0')
		*s++ = '\0';
	*p = s;
	return t;
}

static int parse_u64(const char *s, int base, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s == '\0' || *s == '-' || *s == '+')
		return 0;
	errno = 0;
	v = strtoull(s, &end, base);
	if (errno != 0 || *end != '\0')
		return 0;
	*out = v;
	return 1;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static unsigned char *parse_bytes(const char *s, size_t len)
{
	unsigned char *b;
	size_t i;

	if (s == NULL || strlen(s) != 2 * len)
		return NULL;
	b = xmalloc(len);
	for (i = 0; i < len; i++) {
		int hi = hexval((unsigned char)s[2 * i]);
		int lo = hexval((unsigned char)s[2 * i + 1]);

		if (hi < 0 || lo < 0) {
			free(b);
			return NULL;
		}
		b[i] = (unsigned char)(hi << 4 | lo);
	}
	return b;
}

static int parse_range(char **p, struct range *rg, int with_bytes)
{
	uint64_t va, len;

	if (!parse_u64(next_tok(p), 16, &va) || !parse_u64(next_tok(p), 10, &len) ||
	    len > (uint64_t)(SSIZE_MAX / 2))
		return 0;
	rg->va = va;
	rg->len = (size_t)len;
	rg->bytes = NULL;
	rg->substr = NULL;
	if (with_bytes) {
		rg->bytes = parse_bytes(next_tok(p), rg->len);
		return rg->bytes != NULL && next_tok(p) == NULL;
	}
	/* fail: the rest of the line is the substring. */
	if (**p == '\0')
		return 0;
	rg->substr = xstrdup(*p);
	return 1;
}

/* ---- kvm_walk_pages ---------------------------------------------------- */

struct walkstate {
	uint64_t calls;      /* callbacks so far */
	uint64_t want;       /* index of the page to keep */
	uint64_t stop_after; /* return 0 after this many calls (0: never) */
	int bad_version;
	struct kvm_page page;
};

static int walk_cb(struct kvm_page *p, void *arg)
{
	struct walkstate *w = arg;

	if (p->kp_version != LIBKVM_WALK_PAGES_VERSION)
		w->bad_version = 1;
	if (w->calls == w->want)
		w->page = *p;
	w->calls++;
	return w->stop_after == 0 || w->calls < w->stop_after;
}

static void check_walkcount(kvm_t *kd, uint64_t want)
{
	struct walkstate w;
	int r;

	memset(&w, 0, sizeof(w));
	w.want = UINT64_MAX;
	r = kvm_walk_pages(kd, walk_cb, &w);
	check(r == 1 && w.calls == want && !w.bad_version,
	    "kvm_walk_pages: got %d after %llu pages (bad version: %d, error \"%s\"), "
	    "expected 1 after %llu pages",
	    r, (unsigned long long)w.calls, w.bad_version, nlname(kvm_geterr(kd)),
	    (unsigned long long)want);
	memset(&w, 0, sizeof(w));
	w.want = UINT64_MAX;
	w.stop_after = 1;
	r = kvm_walk_pages(kd, walk_cb, &w);
	check(r == 0 && w.calls == 1,
	    "kvm_walk_pages stopped by its callback: got %d after %llu calls, "
	    "expected 0 after 1",
	    r, (unsigned long long)w.calls);
}

static void check_walkpage(kvm_t *kd, uint64_t index, const struct kvm_page *want)
{
	struct walkstate w;
	const struct kvm_page *g = &w.page;

	memset(&w, 0, sizeof(w));
	w.want = index;
	kvm_walk_pages(kd, walk_cb, &w);
	check(w.calls > index && g->kp_paddr == want->kp_paddr &&
	    g->kp_kmap_vaddr == want->kp_kmap_vaddr &&
	    g->kp_dmap_vaddr == want->kp_dmap_vaddr && g->kp_prot == want->kp_prot &&
	    g->kp_offset == want->kp_offset && g->kp_len == want->kp_len,
	    "kvm_walk_pages page %llu: got paddr 0x%llx kmap 0x%llx dmap 0x%llx "
	    "prot %u offset %lld len %zu, expected paddr 0x%llx kmap 0x%llx dmap "
	    "0x%llx prot %u offset %lld len %zu",
	    (unsigned long long)index, (unsigned long long)g->kp_paddr,
	    (unsigned long long)g->kp_kmap_vaddr, (unsigned long long)g->kp_dmap_vaddr,
	    (unsigned)g->kp_prot, (long long)g->kp_offset, g->kp_len,
	    (unsigned long long)want->kp_paddr, (unsigned long long)want->kp_kmap_vaddr,
	    (unsigned long long)want->kp_dmap_vaddr, (unsigned)want->kp_prot,
	    (long long)want->kp_offset, want->kp_len);
}

/* ---- The resolver ---------------------------------------------------- */

static long resolver_calls;

static int table_resolver(const char *name, kvaddr_t *addr)
{
	size_t i;

	resolver_calls++;
	if (name == NULL || addr == NULL)
		return -1;
	for (i = 0; i < ntable; i++) {
		if (strcmp(table[i].name, name) == 0) {
			*addr = table[i].value;
			return 0;
		}
	}
	return -1;
}

static int in_table(const char *name)
{
	size_t i;

	for (i = 0; i < ntable; i++)
		if (strcmp(table[i].name, name) == 0)
			return 1;
	return 0;
}

static void check_resolver(const char *kernel, const char *core)
{
	char errbuf[KVM_ERRBUF_SIZE];
	struct kvm_nlist *nl;
	kvm_t *kd;
	long open_calls;
	size_t i;
	int r;

	memset(errbuf, 'X', sizeof(errbuf));
	resolver_calls = 0;
	kd = kvm_open2(kernel, core, O_RDONLY, errbuf, table_resolver);
	if (!check(kd != NULL,
	    "kvm_open2(%s, %s, O_RDONLY, errbuf, resolver): got NULL (%.*s), "
	    "expected a handle",
	    kernel, core, KVM_ERRBUF_SIZE, errbuf))
		return;
	check(buf_is(errbuf, sizeof(errbuf), 'X'),
	    "kvm_open2 with a resolver wrote errbuf on success: got \"%.40s\", "
	    "expected it untouched",
	    errbuf);
	/*
	 * Not checked per call: a minidump's header gives kernbase and its
	 * page tables, so, as in FreeBSD, opening one needs no symbol.
	 */
	open_calls = resolver_calls;

	for (i = 0; i < ntable; i++) {
		check_nlist2_one(kd, "resolver: ", table[i].name, 1, table[i].value,
		    N_DATA | N_EXT);
	}
	check(resolver_calls > 0 && resolver_calls - open_calls >= (long)ntable,
	    "resolver calls: got %ld (%ld in kvm_open2, %ld in %zu kvm_nlist2 "
	    "calls), expected > 0 and at least one per kvm_nlist2 call",
	    resolver_calls, open_calls, resolver_calls - open_calls, ntable);

	/* The whole table at once. */
	nl = xmalloc((ntable + 1) * sizeof(*nl));
	for (i = 0; i < ntable; i++) {
		nl[i].n_name = table[i].name;
		nl[i].n_type = GARBAGE_TYPE;
		nl[i].n_value = GARBAGE_VALUE;
	}
	nl[ntable].n_name = NULL;
	r = kvm_nlist2(kd, nl);
	check(r == 0, "resolver: kvm_nlist2(whole table) returned: got %d, expected 0",
	    r);
	for (i = 0; i < ntable; i++) {
		check(nl[i].n_value == table[i].value && nl[i].n_type == (N_DATA | N_EXT),
		    "resolver: kvm_nlist2(whole table) entry %s: got n_value 0x%llx "
		    "n_type %u, expected n_value 0x%llx n_type %u",
		    table[i].name, (unsigned long long)nl[i].n_value,
		    (unsigned)nl[i].n_type, (unsigned long long)table[i].value,
		    (unsigned)(N_DATA | N_EXT));
	}
	free(nl);

	/* The resolver is the only source of symbols for this handle. */
	if (!in_table("capi_test_not_in_the_table"))
		check_nlist2_one(kd, "resolver: ", "capi_test_not_in_the_table", 0, 0, 0);
	for (i = 0; i < nsyms; i++) {
		if (!in_table(syms[i].name))
			check_nlist2_one(kd, "resolver: ", syms[i].name, 0, 0, 0);
	}
	if (ntable > 0)
		check_nlist_one(kd, "resolver: ", table[0].name, 1, table[0].value,
		    N_DATA | N_EXT);

	/* Translation with the resolver's symbols reads the same memory. */
	for (i = 0; i < nranges; i++) {
		if (ranges[i].bytes != NULL)
			check_read(kd, "resolver: ", &ranges[i]);
		else
			check_fail(kd, "resolver: ", &ranges[i]);
	}

	r = kvm_close(kd);
	check(r == 0, "kvm_close(resolver handle): got %d, expected 0", r);
}

/* ---- Fixed checks ---------------------------------------------------- */

static void check_open_failures(const char *kernel, const char *core)
{
	static const char missing[] = "/nonexistent/capi_test/core";
	char errbuf[KVM_ERRBUF_SIZE];
	kvm_t *kd;

	memset(errbuf, 'X', sizeof(errbuf));
	kd = kvm_open2(kernel, missing, O_RDONLY, errbuf, NULL);
	check(kd == NULL, "kvm_open2(%s, %s): got a handle, expected NULL", kernel,
	    missing);
	if (check(errbuf_is_message(errbuf),
	    "kvm_open2(%s, %s) errbuf: got %s, expected a non-empty NUL-terminated "
	    "message",
	    kernel, missing, errbuf[0] == '\0' ? "\"\"" : "no NUL in the buffer")) {
		check(strstr(errbuf, missing) != NULL,
		    "kvm_open2(%s, %s) errbuf: got \"%s\", expected it to mention %s",
		    kernel, missing, errbuf, missing);
	}
	if (kd != NULL)
		kvm_close(kd);

	memset(errbuf, 'X', sizeof(errbuf));
	kd = kvm_open2(kernel, kernel, O_RDONLY, errbuf, NULL);
	check(kd == NULL, "kvm_open2(KERNEL, KERNEL): got a handle, expected NULL");
	check(errbuf_is_message(errbuf),
	    "kvm_open2(KERNEL, KERNEL) errbuf: got %s, expected a non-empty "
	    "NUL-terminated message",
	    errbuf[0] == '\0' ? "\"\"" : "no NUL in the buffer");
	if (kd != NULL)
		kvm_close(kd);

	/* FreeBSD rejects flags & ~O_RDWR, so O_WRONLY too. */
	kd = kvm_open2(kernel, core, O_WRONLY, errbuf, NULL);
	check(kd == NULL, "kvm_open2(O_WRONLY): got a handle, expected NULL");
	if (kd != NULL)
		kvm_close(kd);

	memset(errbuf, 'X', sizeof(errbuf));
	kd = kvm_open2(kernel, core, 0x40000000, errbuf, NULL);
	check(kd == NULL, "kvm_open2(flags 0x40000000): got a handle, expected NULL");
	check(errbuf_is_message(errbuf),
	    "kvm_open2(flags 0x40000000) errbuf: got %s, expected a non-empty "
	    "NUL-terminated message",
	    errbuf[0] == '\0' ? "\"\"" : "no NUL in the buffer");
	if (kd != NULL)
		kvm_close(kd);

	/* kvm_open() reports on stderr, prefixed "capi_test: ". */
	kd = kvm_open(kernel, "/nonexistent/core", NULL, O_RDONLY, "capi_test");
	check(kd == NULL,
	    "kvm_open(KERNEL, /nonexistent/core): got a handle, expected NULL");
	if (kd != NULL)
		kvm_close(kd);
}

static void check_other_opens(const char *kernel, const char *core)
{
	char errbuf[KVM_ERRBUF_SIZE];
	kvm_t *kd;
	int r;

	memset(errbuf, 'X', sizeof(errbuf));
	kd = kvm_openfiles(kernel, core, NULL, O_RDONLY, errbuf);
	if (check(kd != NULL,
	    "kvm_openfiles(KERNEL, CORE, NULL, O_RDONLY): got NULL (%.*s), "
	    "expected a handle",
	    KVM_ERRBUF_SIZE, errbuf)) {
		check(buf_is(errbuf, sizeof(errbuf), 'X'),
		    "kvm_openfiles wrote errbuf on success: got \"%.40s\", expected "
		    "it untouched",
		    errbuf);
		if (nranges > 0 && ranges[0].bytes != NULL)
			check_read(kd, "kvm_openfiles handle: ", &ranges[0]);
		r = kvm_close(kd);
		check(r == 0, "kvm_close(kvm_openfiles handle): got %d, expected 0", r);
	}

	kd = kvm_open(kernel, core, NULL, O_RDONLY, "capi_test");
	if (check(kd != NULL, "kvm_open(KERNEL, CORE): got NULL, expected a handle")) {
		/*
		 * A failed read is a soft error: recorded for kvm_geterr(), not
		 * printed (the Rust side checks stderr has no "invalid address").
		 */
		char b[8];
		ssize_t n = kvm_read2(kd, 0, b, sizeof(b));
		const char *e = kvm_geterr(kd);

		check(n == -1 && e != NULL && strstr(e, "invalid address") != NULL,
		    "kvm_open handle, kvm_read2(0): got %zd \"%s\", expected -1 and "
		    "\"invalid address ...\"",
		    n, nlname(e));
		r = kvm_close(kd);
		check(r == 0, "kvm_close(kvm_open handle): got %d, expected 0", r);
	}
}

/* ---- Per-thread error text -------------------------------------------- */

struct errthread {
	kvm_t *kd;
	int ok;
};

static void *fail_and_geterr(void *p)
{
	struct errthread *t = p;
	char b[8];
	const char *e;

	/* A fresh thread has no error of its own yet. */
	e = kvm_geterr(t->kd);
	t->ok = e != NULL && e[0] == '\0';
	t->ok &= kvm_read2(t->kd, 8, b, sizeof(b)) == -1;
	e = kvm_geterr(t->kd);
	t->ok &= e != NULL && strstr(e, "invalid address (0x8)") != NULL;
	return NULL;
}

/*
 * kvm_geterr() gives each thread its own last error on a handle: another
 * thread's failure neither shows in it nor overwrites it.
 */
static void check_errors_per_thread(kvm_t *kd)
{
	struct errthread t = { kd, 0 };
	pthread_t th;
	char b[8];
	const char *e;

	kvm_read2(kd, 0, b, sizeof(b));
	if (!check(pthread_create(&th, NULL, fail_and_geterr, &t) == 0,
	    "pthread_create failed"))
		return;
	pthread_join(th, NULL);
	check(t.ok, "per-thread kvm_geterr: the other thread did not see exactly "
	    "its own error");
	e = kvm_geterr(kd);
	check(e != NULL && strstr(e, "invalid address (0x0)") != NULL,
	    "kvm_geterr after another thread failed: got \"%s\", expected this "
	    "thread's \"invalid address (0x0) ...\"",
	    nlname(e));
}

static void check_null_handle(void)
{
	const char *e;
	int r;

	errno = 0;
	r = kvm_close(NULL);
	check(r == -1, "kvm_close(NULL): got %d, expected -1", r);
	check(errno == EINVAL, "kvm_close(NULL) errno: got %d, expected EINVAL (%d)",
	    errno, EINVAL);
	e = kvm_geterr(NULL);
	check(e != NULL && e[0] == '\0', "kvm_geterr(NULL): got %s%s%s, expected \"\"",
	    e ? "\"" : "", e ? e : "NULL", e ? "\"" : "");
	r = kvm_native(NULL);
	check(r == 0, "kvm_native(NULL): got %d, expected 0", r);
}

static void check_handle_misc(kvm_t *kd)
{
	unsigned char buf[8] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88 };
	struct kvm_nlist nl[2];
	const char *e;
	ssize_t r;
	kssize_t disp;
	int n;

	r = kvm_read2(kd, 0, buf, 0);
	check(r == 0, "kvm_read2(0x0, 0): got %zd, expected 0", r);
	r = kvm_read2(kd, 0xffffffff80200000ULL, buf, 0);
	check(r == 0, "kvm_read2(0xffffffff80200000, 0): got %zd, expected 0", r);
	r = kvm_read(kd, 0, buf, 0);
	check(r == 0, "kvm_read(0x0, 0): got %zd, expected 0", r);

	r = kvm_write(kd, 0xffffffff80200000UL, buf, sizeof(buf));
	e = kvm_geterr(kd);
	check(r == -1, "kvm_write(8 bytes): got %zd, expected -1", r);
	check(e != NULL && strstr(e, "read-only") != NULL,
	    "kvm_write kvm_geterr: got \"%s\", expected it to mention read-only",
	    nlname(e));

	disp = kvm_kerndisp(kd);
	check(disp == 0, "kvm_kerndisp: got %lld, expected 0", (long long)disp);

	nl[0].n_name = "";
	nl[0].n_type = GARBAGE_TYPE;
	nl[0].n_value = GARBAGE_VALUE;
	nl[1].n_name = NULL;
	n = kvm_nlist2(kd, nl);
	check(n == 0, "kvm_nlist2({\"\"}): got %d, expected 0", n);
	nl[0].n_name = NULL;
	n = kvm_nlist2(kd, nl);
	check(n == 0, "kvm_nlist2({NULL}): got %d, expected 0", n);
}

/* ---- Main ------------------------------------------------------------ */

/* Reads EXPECTFILE, running each directive but resolve as it comes. */
static void run_expectfile(kvm_t *kd, const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, *p, *word;
	size_t cap = 0, lineno = 0, ndirectives = 0;
	ssize_t n;

	if (!check(f != NULL, "open %s: got %s, expected success", path,
	    strerror(errno)))
		return;
	while ((n = getline(&line, &cap, f)) != -1) {
		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		p = line;
		word = next_tok(&p);
		if (word == NULL || word[0] == '#')
			continue;
		ndirectives++;
		if (strcmp(word, "native") == 0) {
			uint64_t want;
			int got = kvm_native(kd);

			if (!check(parse_u64(next_tok(&p), 10, &want) && next_tok(&p) == NULL,
			    "%s:%zu: malformed native line", path, lineno))
				continue;
			check((uint64_t)got == want, "kvm_native: got %d, expected %llu", got,
			    (unsigned long long)want);
		} else if (strcmp(word, "sym") == 0 || strcmp(word, "nosym") == 0 ||
		    strcmp(word, "resolve") == 0) {
			int is_sym = word[0] == 's', is_res = word[0] == 'r';
			char *name = next_tok(&p);
			uint64_t value = 0, type = 0;
			struct sym *s;

			if (!check(name != NULL &&
			    (is_sym || is_res ? parse_u64(next_tok(&p), 16, &value) : 1) &&
			    (is_sym ? parse_u64(next_tok(&p), 10, &type) && type <= 255 : 1) &&
			    next_tok(&p) == NULL,
			    "%s:%zu: malformed %s line", path, lineno, word))
				continue;
			s = is_res ? add_sym(&table, &ntable, &captable)
			           : add_sym(&syms, &nsyms, &capsyms);
			s->name = xstrdup(name);
			s->value = value;
			s->type = (unsigned)type;
			s->found = is_sym || is_res;
			if (is_res)
				continue;
			check_nlist2_one(kd, "", s->name, s->found, s->value, s->type);
			check_nlist_one(kd, "", s->name, s->found, s->value, s->type);
		} else if (strcmp(word, "read") == 0 || strcmp(word, "fail") == 0 ||
		    strcmp(word, "threads") == 0) {
			int is_fail = word[0] == 'f', is_threads = word[0] == 't';
			struct range rg;

			if (!check(parse_range(&p, &rg, !is_fail),
			    "%s:%zu: malformed %s line", path, lineno, word))
				continue;
			if (is_threads) {
				check_threads(kd, &rg);
				free(rg.bytes);
				continue;
			}
			ranges = grow(ranges, &capranges, nranges, sizeof(*ranges));
			ranges[nranges++] = rg;
			if (is_fail)
				check_fail(kd, "", &rg);
			else
				check_read(kd, "", &rg);
		} else if (strcmp(word, "phys") == 0 || strcmp(word, "physfail") == 0 ||
		    strcmp(word, "vtopfail") == 0) {
			int ok = strcmp(word, "phys") == 0;
			struct range rg;

			if (!check(parse_range(&p, &rg, ok),
			    "%s:%zu: malformed %s line", path, lineno, word))
				continue;
			if (word[0] == 'v')
				check_vtop(kd, rg.va, 0, rg.substr);
			else
				check_phys(kd, &rg);
			free(rg.bytes);
			free(rg.substr);
		} else if (strcmp(word, "vtop") == 0) {
			uint64_t va, pa;

			if (!check(parse_u64(next_tok(&p), 16, &va) &&
			    parse_u64(next_tok(&p), 16, &pa) && next_tok(&p) == NULL,
			    "%s:%zu: malformed vtop line", path, lineno))
				continue;
			check_vtop(kd, va, pa, NULL);
		} else if (strcmp(word, "walkcount") == 0) {
			uint64_t want;

			if (!check(parse_u64(next_tok(&p), 10, &want) && next_tok(&p) == NULL,
			    "%s:%zu: malformed walkcount line", path, lineno))
				continue;
			check_walkcount(kd, want);
		} else if (strcmp(word, "walkpage") == 0) {
			uint64_t index, paddr, kmap, dmap, prot, off, len;
			struct kvm_page want;
			char *offtok;
			int neg;

			if (!check(parse_u64(next_tok(&p), 10, &index) &&
			    parse_u64(next_tok(&p), 16, &paddr) &&
			    parse_u64(next_tok(&p), 16, &kmap) &&
			    parse_u64(next_tok(&p), 16, &dmap) &&
			    parse_u64(next_tok(&p), 10, &prot) && prot <= 7 &&
			    (offtok = next_tok(&p)) != NULL &&
			    ((neg = strcmp(offtok, "-1") == 0) || parse_u64(offtok, 10, &off)) &&
			    parse_u64(next_tok(&p), 10, &len) && next_tok(&p) == NULL,
			    "%s:%zu: malformed walkpage line", path, lineno))
				continue;
			memset(&want, 0, sizeof(want));
			want.kp_paddr = paddr;
			want.kp_kmap_vaddr = kmap;
			want.kp_dmap_vaddr = dmap;
			want.kp_prot = (vm_prot_t)prot;
			want.kp_offset = neg ? -1 : (off_t)off;
			want.kp_len = (size_t)len;
			check_walkpage(kd, index, &want);
		} else {
			check(0, "%s:%zu: unknown directive \"%s\"", path, lineno, word);
		}
	}
	free(line);
	fclose(f);
	check(ndirectives > 0, "%s: got no directives, expected some", path);
}

int main(int argc, char **argv)
{
	char errbuf[KVM_ERRBUF_SIZE];
	const char *e;
	kvm_t *kd;
	int r;

	if (argc != 4) {
		fprintf(stderr, "usage: capi_test KERNEL CORE EXPECTFILE\n");
		return 2;
	}

	check_null_handle();
	check_open_failures(argv[1], argv[2]);

	memset(errbuf, 'X', sizeof(errbuf));
	kd = kvm_open2(argv[1], argv[2], O_RDONLY, errbuf, NULL);
	if (check(kd != NULL,
	    "kvm_open2(%s, %s, O_RDONLY, errbuf, NULL): got NULL (%.*s), expected "
	    "a handle",
	    argv[1], argv[2], KVM_ERRBUF_SIZE, errbuf)) {
		check(buf_is(errbuf, sizeof(errbuf), 'X'),
		    "kvm_open2 wrote errbuf on success: got \"%.40s\", expected it "
		    "untouched (all 'X')",
		    errbuf);
		e = kvm_geterr(kd);
		check(e != NULL && e[0] == '\0',
		    "kvm_geterr after open: got \"%s\", expected \"\"", nlname(e));

		run_expectfile(kd, argv[3]);
		check_nlist2_all(kd);
		check_nlist2_empty_terminator(kd);
		check_handle_misc(kd);
		check_errors_per_thread(kd);
		check_other_opens(argv[1], argv[2]);

		r = kvm_close(kd);
		check(r == 0, "kvm_close: got %d, expected 0", r);

		check_resolver(argv[1], argv[2]);
	}

	printf("%lu passed, %lu failed\n", npassed, nfailed);
	return nfailed == 0 ? 0 : 1;
}

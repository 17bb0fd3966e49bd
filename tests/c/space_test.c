/*
 * space_test: the address-space extensions of the C API (issue 9) from C:
 * kvm_open_space() over a dump handle and over other spaces, and
 * kvm_read2(), kvm_read_phys(), kvm_vtop(), kvm_walk_pages(), kvm_geterr(),
 * kvm_nlist2(), kvm_native(), kvm_kerndisp() and kvm_close() on the
 * spaces, checked against expectations computed from the fixture's model
 * (tests/space_capi.rs writes them).  Linked once with libkvm.so and once
 * with libkvm.a.
 *
 * Usage: space_test KERNEL CORE EXPECTFILE
 *
 * Prints one line per failed check ("FAIL: ..."), then "N passed, N
 * failed"; exits 0 only if no check failed (1 otherwise, 2 on a usage or
 * format error).
 *
 * EXPECTFILE: one directive per line, executed in order; blank lines and
 * lines starting with '#' are ignored.  HEX fields are hexadecimal without
 * "0x", other numbers decimal.  ID names a handle: 0 is the dump, opened
 * with kvm_open2() before the first line; others are set by "open".
 * NEEDLES is the rest of the line: texts separated by '|' that kvm_geterr()
 * (or errbuf) must all contain, the first one at its start; a text may
 * offer alternatives separated by '^'.
 *
 *   open ID BASEID MMU BASE ROOT CR0 CR4 EFER TCR NRANGES RANGES
 *       kvm_open_space(handle BASEID, {KVM_SPACE_VERSION, MMU, BASE, 0,
 *       ROOT, CR0, CR4, EFER, TCR, RANGES, NRANGES}) returns a handle, and
 *       leaves errbuf untouched.  ROOT..TCR are HEX; RANGES is "-" (NULL)
 *       or HEXADDR:HEXLEN:HEXTARGET[,...].
 *   bad BASEID VERSION MMU BASE FLAGS ROOT CR0 CR4 EFER TCR NRANGES RANGES
 *       NEEDLES: kvm_open_space() returns NULL with errbuf holding a text
 *       that starts with "kvm_open_space: " and contains the needles
 *       (anywhere; there may be none).
 *   badnull BASEID NEEDLES
 *       The same for a NULL descriptor.
 *   read ID HEXVA LEN HEXBYTES
 *       kvm_read2() returns LEN and those bytes, writing nothing past them.
 *   fail ID HEXVA LEN NEEDLES
 *       kvm_read2() returns -1 and kvm_geterr() matches NEEDLES.
 *   phys ID HEXPA LEN HEXBYTES / physfail ID HEXPA LEN NEEDLES
 *       The same for kvm_read_phys().
 *   vtop ID HEXVA HEXPA / vtopfail ID HEXVA NEEDLES
 *       kvm_vtop() returns 0 and stores HEXPA / returns -1.
 *   walkcount ID N
 *       kvm_walk_pages() returns 1 after N calls, each with kp_version
 *       LIBKVM_WALK_PAGES_VERSION; a callback returning 0 stops it after
 *       one call (it returns 0), when N > 0.
 *   walkpage ID I HEXPADDR HEXKMAP HEXDMAP PROT OFFSET LEN
 *       The I-th page reported has these fields (OFFSET -1: not in the
 *       file).
 *   walkfail ID
 *       kvm_walk_pages() returns 0 without calling back (no tables).
 *   misc ID
 *       kvm_nlist2() of two names resolves none (returns 2), kvm_native()
 *       is 0, kvm_kerndisp() is 0.
 *   threads ID HEXVA LEN HEXBYTES
 *       4 threads each read the range 2000 times through the handle.
 *   close ID
 *       kvm_close() returns 0; the handles above it keep working.
 */
#define _POSIX_C_SOURCE 200809L

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

#define MAXH 64
#define NTHREADS 4
#define NITER 2000
#define GUARD 16
#define GUARD_BYTE 0xcc

static unsigned long npassed, nfailed;
static kvm_t *handles[MAXH];
static unsigned long lineno;

#ifdef __GNUC__
#define PRINTFLIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTFLIKE(f, a)
#endif

static int check(int ok, const char *fmt, ...) PRINTFLIKE(2, 3);

/* Counts one check; on failure prints "FAIL: line N: " and the message. */
static int check(int ok, const char *fmt, ...)
{
	va_list ap;

	if (ok) {
		npassed++;
		return 1;
	}
	nfailed++;
	printf("FAIL: line %lu: ", lineno);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	return 0;
}

static void die(const char *what)
{
	fprintf(stderr, "space_test: line %lu: %s\n", lineno, what);
	exit(2);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		die("out of memory");
	return p;
}

static uint64_t hex(const char *s)
{
	char *end;
	unsigned long long v;

	if (s == NULL)
		die("missing field");
	v = strtoull(s, &end, 16);
	if (*end != '\0')
		die("bad hex field");
	return v;
}

static long long dec(const char *s)
{
	char *end;
	long long v;

	if (s == NULL)
		die("missing field");
	v = strtoll(s, &end, 10);
	if (*end != '\0')
		die("bad decimal field");
	return v;
}

static kvm_t *handle(const char *s)
{
	long long id = dec(s);

	if (id < 0 || id >= MAXH || handles[id] == NULL)
		die("no such handle");
	return handles[id];
}

/* HEXBYTES into a new buffer of *len bytes. */
static unsigned char *unhex(const char *s, size_t len)
{
	unsigned char *b = xmalloc(len);
	size_t i;

	if (s == NULL || strlen(s) != 2 * len)
		die("HEXBYTES of the wrong length");
	for (i = 0; i < len; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			die("bad HEXBYTES");
		b[i] = (unsigned char)v;
	}
	return b;
}

/* Does text contain one of the '^'-separated alternatives of alt[0..n)? */
static int contains_one(const char *text, const char *alt, size_t n,
    int at_start)
{
	char buf[1024];
	char *save = NULL, *tok;

	if (n >= sizeof(buf))
		die("needle too long");
	memcpy(buf, alt, n);
	buf[n] = '\0';
	for (tok = strtok_r(buf, "^", &save); tok != NULL;
	    tok = strtok_r(NULL, "^", &save)) {
		if (at_start ? strncmp(text, tok, strlen(tok)) == 0 :
		    strstr(text, tok) != NULL)
			return 1;
	}
	return 0;
}

/*
 * Checks text against NEEDLES (see the header comment); with anchored 0 no
 * needle need be at the start.  No needles: nothing to check.
 */
static void check_needles(const char *what, const char *text,
    const char *needles, int anchored)
{
	const char *p = needles;
	int first = anchored;

	if (*needles == '\0')
		return;

	if (text == NULL) {
		check(0, "%s: no error text, expected \"%s\"", what, needles);
		return;
	}
	for (;;) {
		const char *bar = strchr(p, '|');
		size_t n = bar ? (size_t)(bar - p) : strlen(p);

		check(contains_one(text, p, n, first),
		    "%s: error text \"%s\" does not %s \"%.*s\"", what, text,
		    first ? "start with" : "contain", (int)n, p);
		if (bar == NULL)
			break;
		p = bar + 1;
		first = 0;
	}
}

/* RANGES ("-" or A:L:T,...) into a new array. */
static struct kvm_range *parse_ranges(const char *s, size_t *n)
{
	struct kvm_range *r;
	const char *p;
	size_t i, count = 1;

	*n = 0;
	if (s == NULL)
		die("missing RANGES");
	if (strcmp(s, "-") == 0)
		return NULL;
	for (p = s; *p; p++)
		count += *p == ',';
	r = xmalloc(count * sizeof(*r));
	for (i = 0, p = s; i < count; i++) {
		unsigned long long a, l, t;
		int used;

		if (sscanf(p, "%llx:%llx:%llx%n", &a, &l, &t, &used) != 3)
			die("bad RANGES");
		r[i].kr_addr = a;
		r[i].kr_len = l;
		r[i].kr_target = t;
		p += used;
		if (*p == ',')
			p++;
	}
	*n = count;
	return r;
}

/* The rest of the line after the n-th field (fields split on spaces). */
static const char *rest_after(const char *line, int n)
{
	const char *p = line;

	while (n-- > 0) {
		p = strchr(p, ' ');
		if (p == NULL)
			return "";
		p++;
	}
	return p;
}

/* ---- Directives -------------------------------------------------------- */

static void do_open(char **f)
{
	struct kvm_space ks;
	struct kvm_range *r;
	size_t n;
	char errbuf[KVM_ERRBUF_SIZE];
	long long id = dec(f[1]);
	kvm_t *kd;

	memset(&ks, 0, sizeof(ks));
	ks.ks_version = KVM_SPACE_VERSION;
	ks.ks_mmu = (uint32_t)dec(f[3]);
	ks.ks_base = (uint32_t)dec(f[4]);
	ks.ks_flags = 0;
	ks.ks_root = hex(f[5]);
	ks.ks_cr0 = hex(f[6]);
	ks.ks_cr4 = hex(f[7]);
	ks.ks_efer = hex(f[8]);
	ks.ks_tcr = hex(f[9]);
	r = parse_ranges(f[11], &n);
	ks.ks_ranges = r;
	ks.ks_nranges = (size_t)dec(f[10]);
	memset(errbuf, 'X', sizeof(errbuf));
	kd = kvm_open_space(handle(f[2]), &ks, errbuf);
	/* The descriptor is the caller's: the space must not need it. */
	if (r != NULL)
		memset(r, 0xa5, n * sizeof(*r));
	free(r);
	if (!check(kd != NULL, "kvm_open_space(id %lld): got NULL (%.200s)", id,
	    errbuf))
		exit(1); /* later lines need it */
	check(errbuf[0] == 'X' && errbuf[KVM_ERRBUF_SIZE - 1] == 'X',
	    "kvm_open_space(id %lld) wrote errbuf on success", id);
	if (id <= 0 || id >= MAXH || handles[id] != NULL)
		die("bad or reused handle id");
	handles[id] = kd;
}

static void do_bad(char **f, const char *line, int null_ks)
{
	struct kvm_space ks;
	struct kvm_range *r = NULL;
	size_t n;
	char errbuf[KVM_ERRBUF_SIZE];
	const char *needles;
	kvm_t *kd;

	memset(&ks, 0, sizeof(ks));
	if (!null_ks) {
		ks.ks_version = (uint32_t)dec(f[2]);
		ks.ks_mmu = (uint32_t)dec(f[3]);
		ks.ks_base = (uint32_t)dec(f[4]);
		ks.ks_flags = (uint32_t)dec(f[5]);
		ks.ks_root = hex(f[6]);
		ks.ks_cr0 = hex(f[7]);
		ks.ks_cr4 = hex(f[8]);
		ks.ks_efer = hex(f[9]);
		ks.ks_tcr = hex(f[10]);
		ks.ks_nranges = (size_t)dec(f[11]);
		r = parse_ranges(f[12], &n);
		ks.ks_ranges = r;
		needles = rest_after(line, 13);
	} else {
		needles = rest_after(line, 2);
	}
	memset(errbuf, 'X', sizeof(errbuf));
	kd = kvm_open_space(handle(f[1]), null_ks ? NULL : &ks, errbuf);
	free(r);
	if (!check(kd == NULL, "bad descriptor accepted: %s", line)) {
		kvm_close(kd);
		return;
	}
	if (!check(memchr(errbuf, '\0', sizeof(errbuf)) != NULL,
	    "errbuf not NUL-terminated: %s", line))
		return;
	check(strncmp(errbuf, "kvm_open_space: ", 16) == 0,
	    "errbuf \"%s\" does not start with \"kvm_open_space: \"", errbuf);
	if (strlen(errbuf) >= 16)
		check_needles(line, errbuf + 16, needles, 0);
}

static void do_read(char **f, int phys)
{
	kvm_t *kd = handle(f[1]);
	uint64_t a = hex(f[2]);
	size_t len = (size_t)dec(f[3]);
	unsigned char *want = unhex(f[4], len);
	unsigned char *buf = xmalloc(len + GUARD);
	const char *fn = phys ? "kvm_read_phys" : "kvm_read2";
	ssize_t r;
	size_t i;

	memset(buf, GUARD_BYTE, len + GUARD);
	r = phys ? kvm_read_phys(kd, a, buf, len) : kvm_read2(kd, a, buf, len);
	if (check(r == (ssize_t)len, "%s(0x%llx, %zu): got %zd (%s)", fn,
	    (unsigned long long)a, len, r, r < 0 ? kvm_geterr(kd) : "short")) {
		for (i = 0; i < len && buf[i] == want[i]; i++)
			;
		check(i == len, "%s(0x%llx, %zu): wrong byte at offset %zu: "
		    "0x%02x, expected 0x%02x", fn, (unsigned long long)a, len, i,
		    i < len ? buf[i] : 0, i < len ? want[i] : 0);
		for (i = 0; i < GUARD && buf[len + i] == GUARD_BYTE; i++)
			;
		check(i == GUARD, "%s(0x%llx, %zu) wrote past the length", fn,
		    (unsigned long long)a, len);
	}
	free(want);
	free(buf);
}

static void do_fail(char **f, const char *line, int phys)
{
	kvm_t *kd = handle(f[1]);
	uint64_t a = hex(f[2]);
	size_t len = (size_t)dec(f[3]);
	unsigned char *buf = xmalloc(len);
	ssize_t r;
	char what[96];

	r = phys ? kvm_read_phys(kd, a, buf, len) : kvm_read2(kd, a, buf, len);
	snprintf(what, sizeof(what), "%s(0x%llx, %zu)",
	    phys ? "kvm_read_phys" : "kvm_read2", (unsigned long long)a, len);
	if (check(r == -1, "%s: got %zd, expected -1", what, r))
		check_needles(what, kvm_geterr(kd), rest_after(line, 4), 1);
	free(buf);
}

static void do_vtop(char **f, const char *line, int fail)
{
	kvm_t *kd = handle(f[1]);
	uint64_t va = hex(f[2]);
	kpaddr_t pa = 0x5a5a;
	int r = kvm_vtop(kd, va, &pa);

	if (fail) {
		if (check(r == -1, "kvm_vtop(0x%llx): got %d (pa 0x%llx), "
		    "expected -1", (unsigned long long)va, r,
		    (unsigned long long)pa))
			check_needles("kvm_vtop", kvm_geterr(kd),
			    rest_after(line, 3), 1);
		return;
	}
	if (check(r == 0, "kvm_vtop(0x%llx): got %d (%s)",
	    (unsigned long long)va, r, kvm_geterr(kd)))
		check(pa == hex(f[3]), "kvm_vtop(0x%llx): got 0x%llx, expected "
		    "%s", (unsigned long long)va, (unsigned long long)pa, f[3]);
}

struct walk {
	long count;
	long stop_after; /* -1: never */
	long pick;
	struct kvm_page page;
	int bad_version;
};

static int walk_cb(struct kvm_page *p, void *closure)
{
	struct walk *w = closure;

	if (p->kp_version != LIBKVM_WALK_PAGES_VERSION)
		w->bad_version = 1;
	if (w->count == w->pick)
		w->page = *p;
	w->count++;
	return w->stop_after < 0 || w->count < w->stop_after;
}

static void do_walkcount(char **f)
{
	kvm_t *kd = handle(f[1]);
	long n = (long)dec(f[2]);
	struct walk w = { 0, -1, -1, { 0 }, 0 };
	int r = kvm_walk_pages(kd, walk_cb, &w);

	check(r == 1, "kvm_walk_pages: got %d, expected 1 (%s)", r,
	    kvm_geterr(kd));
	check(w.count == n, "kvm_walk_pages: %ld pages, expected %ld", w.count,
	    n);
	check(!w.bad_version, "kvm_walk_pages: kp_version");
	if (n > 0) {
		struct walk s = { 0, 1, -1, { 0 }, 0 };

		r = kvm_walk_pages(kd, walk_cb, &s);
		check(r == 0 && s.count == 1, "kvm_walk_pages stopped at once: "
		    "returned %d after %ld calls, expected 0 after 1", r,
		    s.count);
	}
}

static void do_walkpage(char **f)
{
	kvm_t *kd = handle(f[1]);
	struct walk w = { 0, -1, (long)dec(f[2]), { 0 }, 0 };
	struct kvm_page *p = &w.page;
	int r = kvm_walk_pages(kd, walk_cb, &w);

	if (!check(r == 1 && w.count > w.pick, "kvm_walk_pages for page %ld: "
	    "returned %d after %ld pages", w.pick, r, w.count))
		return;
	check(p->kp_paddr == hex(f[3]) && p->kp_kmap_vaddr == hex(f[4]) &&
	    p->kp_dmap_vaddr == hex(f[5]) && p->kp_prot == dec(f[6]) &&
	    (long long)p->kp_offset == dec(f[7]) &&
	    (long long)p->kp_len == dec(f[8]),
	    "walk page %ld: got paddr %llx kmap %llx dmap %llx prot %u "
	    "offset %lld len %lld, expected %s %s %s %s %s %s", w.pick,
	    (unsigned long long)p->kp_paddr,
	    (unsigned long long)p->kp_kmap_vaddr,
	    (unsigned long long)p->kp_dmap_vaddr, (unsigned)p->kp_prot,
	    (long long)p->kp_offset, (long long)p->kp_len, f[3], f[4], f[5],
	    f[6], f[7], f[8]);
}

static void do_walkfail(char **f)
{
	kvm_t *kd = handle(f[1]);
	struct walk w = { 0, -1, -1, { 0 }, 0 };
	int r = kvm_walk_pages(kd, walk_cb, &w);

	check(r == 0 && w.count == 0, "kvm_walk_pages on a space without "
	    "tables: returned %d after %ld pages, expected 0 after 0", r,
	    w.count);
}

static void do_misc(char **f)
{
	kvm_t *kd = handle(f[1]);
	struct kvm_nlist nl[3];
	int r;

	memset(nl, 0, sizeof(nl));
	nl[0].n_name = "version";
	nl[1].n_name = "kernbase";
	nl[2].n_name = NULL;
	r = kvm_nlist2(kd, nl);
	check(r == 2, "kvm_nlist2 on a space: got %d, expected 2", r);
	check(nl[0].n_value == 0 && nl[1].n_value == 0,
	    "kvm_nlist2 on a space resolved a name");
	check(kvm_native(kd) == 0, "kvm_native on a space: got %d",
	    kvm_native(kd));
	check(kvm_kerndisp(kd) == 0, "kvm_kerndisp on a space: got %lld",
	    (long long)kvm_kerndisp(kd));
}

struct job {
	kvm_t *kd;
	uint64_t va;
	size_t len;
	const unsigned char *want;
	unsigned long bad;
};

static void *reader(void *arg)
{
	struct job *j = arg;
	unsigned char *buf = xmalloc(j->len);
	int i;

	for (i = 0; i < NITER; i++) {
		if (kvm_read2(j->kd, j->va, buf, j->len) != (ssize_t)j->len ||
		    memcmp(buf, j->want, j->len) != 0)
			j->bad++;
	}
	free(buf);
	return NULL;
}

static void do_threads(char **f)
{
	pthread_t t[NTHREADS];
	struct job j[NTHREADS];
	size_t len = (size_t)dec(f[3]);
	unsigned char *want = unhex(f[4], len);
	int i;

	for (i = 0; i < NTHREADS; i++) {
		j[i].kd = handle(f[1]);
		j[i].va = hex(f[2]);
		j[i].len = len;
		j[i].want = want;
		j[i].bad = 0;
		if (pthread_create(&t[i], NULL, reader, &j[i]) != 0)
			die("pthread_create");
	}
	for (i = 0; i < NTHREADS; i++) {
		pthread_join(t[i], NULL);
		check(j[i].bad == 0, "thread %d: %lu bad reads of %d", i,
		    j[i].bad, NITER);
	}
	free(want);
}

static void do_close(char **f)
{
	long long id = dec(f[1]);
	int r = kvm_close(handle(f[1]));

	check(r == 0, "kvm_close(id %lld): got %d", id, r);
	handles[id] = NULL;
}

static void run(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (fp == NULL) {
		perror(path);
		exit(2);
	}
	while ((n = getline(&line, &cap, fp)) >= 0) {
		char *copy, *f[16], *save = NULL, *tok;
		int nf = 0;

		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		copy = strcpy(xmalloc((size_t)n + 1), line);
		memset(f, 0, sizeof(f));
		for (tok = strtok_r(copy, " ", &save); tok && nf < 15;
		    tok = strtok_r(NULL, " ", &save))
			f[nf++] = tok;
		if (strcmp(f[0], "open") == 0)
			do_open(f);
		else if (strcmp(f[0], "bad") == 0)
			do_bad(f, line, 0);
		else if (strcmp(f[0], "badnull") == 0)
			do_bad(f, line, 1);
		else if (strcmp(f[0], "read") == 0)
			do_read(f, 0);
		else if (strcmp(f[0], "phys") == 0)
			do_read(f, 1);
		else if (strcmp(f[0], "fail") == 0)
			do_fail(f, line, 0);
		else if (strcmp(f[0], "physfail") == 0)
			do_fail(f, line, 1);
		else if (strcmp(f[0], "vtop") == 0)
			do_vtop(f, line, 0);
		else if (strcmp(f[0], "vtopfail") == 0)
			do_vtop(f, line, 1);
		else if (strcmp(f[0], "walkcount") == 0)
			do_walkcount(f);
		else if (strcmp(f[0], "walkpage") == 0)
			do_walkpage(f);
		else if (strcmp(f[0], "walkfail") == 0)
			do_walkfail(f);
		else if (strcmp(f[0], "misc") == 0)
			do_misc(f);
		else if (strcmp(f[0], "threads") == 0)
			do_threads(f);
		else if (strcmp(f[0], "close") == 0)
			do_close(f);
		else
			die("unknown directive");
		free(copy);
	}
	free(line);
	fclose(fp);
}

int main(int argc, char **argv)
{
	char errbuf[KVM_ERRBUF_SIZE];
	int i;

	if (argc != 4) {
		fprintf(stderr, "usage: space_test KERNEL CORE EXPECTFILE\n");
		return 2;
	}
	handles[0] = kvm_open2(argv[1], argv[2], O_RDONLY, errbuf, NULL);
	if (handles[0] == NULL) {
		printf("FAIL: kvm_open2: %s\n0 passed, 1 failed\n", errbuf);
		return 1;
	}
	/* A NULL base is refused too. */
	{
		struct kvm_space ks;

		memset(&ks, 0, sizeof(ks));
		ks.ks_version = KVM_SPACE_VERSION;
		ks.ks_mmu = KVM_MMU_X86_64;
		errbuf[0] = '\0';
		check(kvm_open_space(NULL, &ks, errbuf) == NULL &&
		    strncmp(errbuf, "kvm_open_space: ", 16) == 0,
		    "kvm_open_space(NULL base): errbuf \"%.100s\"", errbuf);
	}
	run(argv[3]);
	for (i = MAXH - 1; i >= 0; i--)
		if (handles[i] != NULL)
			check(kvm_close(handles[i]) == 0, "kvm_close(id %d)", i);
	printf("%lu passed, %lu failed\n", npassed, nfailed);
	return nfailed == 0 ? 0 : 1;
}

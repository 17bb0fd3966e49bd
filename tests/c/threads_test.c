/*
 * The thread extensions of the C API (issue 10): kvm_walk_threads(),
 * kvm_thread_registers() and kvm_register_name().  Usage: threads_test
 * KERNEL CORE.  Prints one line per thread, "tid pid cpu flags thread pcb
 * name/comm", then its known registers as "name=value" in the order
 * kvm_register_name() gives; tests/capi_threads.rs compares the output
 * with the fixture's model.  The contract checks (stopping a walk, NULL
 * arguments, a wrong kt_version) print "FAIL: ..." and exit 1.
 */
#include <fcntl.h>
#include <kvm.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failed;

static void
fail(const char *what, kvm_t *kd)
{
	printf("FAIL: %s (%s)\n", what, kd != NULL ? kvm_geterr(kd) : "");
	failed = 1;
}

struct walk {
	kvm_t *kd;
	int count;
	int stop_after;
};

static int
print_thread(struct kvm_thread *td, void *closure)
{
	struct walk *w = closure;
	uint64_t regs[KVM_REGS_MAX], known = 0;
	int n, i;

	w->count++;
	if (w->stop_after > 0)
		return (w->count < w->stop_after);
	if (td->kt_version != KVM_THREAD_VERSION)
		fail("kt_version", NULL);
	printf("%d %d %d %u 0x%llx 0x%llx %s/%s\n", td->kt_tid, td->kt_pid,
	    td->kt_cpu, td->kt_flags, (unsigned long long)td->kt_thread,
	    (unsigned long long)td->kt_pcb, td->kt_name, td->kt_comm);
	n = kvm_thread_registers(w->kd, td, regs, KVM_REGS_MAX, &known);
	if (n < 0) {
		printf("  error: %s\n", kvm_geterr(w->kd));
		return (1);
	}
	for (i = 0; i < n; i++) {
		unsigned int bits = 0;
		const char *name = kvm_register_name(w->kd, (unsigned)i, &bits);

		if (name == NULL || (bits != 32 && bits != 64)) {
			fail("kvm_register_name", w->kd);
			break;
		}
		if (known & (1ULL << i))
			printf("  %s=0x%llx\n", name, (unsigned long long)regs[i]);
		else if (regs[i] != 0)
			fail("an unknown register is not 0", w->kd);
	}
	if (kvm_register_name(w->kd, (unsigned)n, NULL) != NULL)
		fail("kvm_register_name past the last register", w->kd);
	return (1);
}

static int
first_thread(struct kvm_thread *td, void *closure)
{
	memcpy(closure, td, sizeof(*td));
	return (0);
}

int
main(int argc, char **argv)
{
	char errbuf[_POSIX2_LINE_MAX];
	struct walk w = { NULL, 0, 0 };
	struct kvm_thread td;
	uint64_t regs[2] = { 0, 0 }, known = 0;
	kvm_t *kd;

	if (argc != 3) {
		fprintf(stderr, "usage: threads_test KERNEL CORE\n");
		return (2);
	}
	kd = kvm_open2(argv[1], argv[2], O_RDONLY, errbuf, NULL);
	if (kd == NULL) {
		printf("FAIL: kvm_open2: %s\n", errbuf);
		return (1);
	}
	w.kd = kd;
	if (kvm_walk_threads(kd, print_thread, &w) != 1)
		fail("kvm_walk_threads", kd);
	/* The kvm_walk_pages contract: 0 when the callback stops the walk. */
	w.count = 0;
	w.stop_after = 2;
	if (kvm_walk_threads(kd, print_thread, &w) != 0 || w.count != 2)
		fail("a stopped kvm_walk_threads", kd);
	if (kvm_walk_threads(kd, NULL, NULL) != 0 ||
	    strstr(kvm_geterr(kd), "NULL callback") == NULL)
		fail("kvm_walk_threads(NULL)", kd);
	/* A copy of a thread serves; fewer slots than registers, too. */
	kvm_walk_threads(kd, first_thread, &td);
	if (kvm_thread_registers(kd, &td, regs, 2, &known) < 2 || known == 0)
		fail("kvm_thread_registers with 2 slots", kd);
	if (kvm_thread_registers(kd, &td, NULL, 0, NULL) < 2)
		fail("kvm_thread_registers for the count", kd);
	td.kt_version = 99;
	if (kvm_thread_registers(kd, &td, regs, 2, &known) != -1 ||
	    strstr(kvm_geterr(kd), "kt_version 99") == NULL)
		fail("kvm_thread_registers(kt_version 99)", kd);
	if (kvm_thread_registers(kd, NULL, regs, 2, &known) != -1)
		fail("kvm_thread_registers(NULL)", kd);
	kvm_close(kd);
	return (failed);
}

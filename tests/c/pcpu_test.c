/*
 * The per-CPU half of the C API (kvm_getpcpu(3)): kvm_getmaxcpu(),
 * kvm_getncpus(), kvm_getpcpu(), kvm_dpcpu_setcpu(), kvm_nlist2()'s
 * relocation of pcpu_entry_* and vnet_entry_* symbols, kvm_read_zpcpu()
 * and kvm_counter_u64_fetch().  Usage: pcpu_test KERNEL CORE COUNTER
 * PCPUSIZE, COUNTER being a counter(9)'s base as the kernel stores it and
 * PCPUSIZE the bytes of struct pcpu to print.  tests/pcpu.rs compares the
 * output with the fixture's layout; contract checks print "FAIL: ...".
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

static uint64_t
read64(kvm_t *kd, kvaddr_t va)
{
	uint64_t v = 0;

	if (kvm_read2(kd, va, &v, sizeof(v)) != sizeof(v))
		fail("kvm_read2", kd);
	return (v);	/* the fixtures here are little-endian, as the host */
}

int
main(int argc, char **argv)
{
	char errbuf[_POSIX2_LINE_MAX];
	struct kvm_nlist nl[3];
	kvm_t *kd;
	unsigned char *pcpu;
	unsigned long counter;
	uint64_t v;
	size_t size, i;
	int maxcpu, ncpus, cpu;

	if (argc != 5)
		return (2);
	counter = strtoul(argv[3], NULL, 0);
	size = strtoul(argv[4], NULL, 0);
	kd = kvm_open2(argv[1], argv[2], O_RDONLY, errbuf, NULL);
	if (kd == NULL) {
		printf("FAIL: kvm_open2: %s\n", errbuf);
		return (1);
	}
	if (kvm_getmaxcpu(NULL) != 0 || kvm_getpcpu(NULL, 0) != NULL)
		fail("NULL handle", NULL);
	maxcpu = kvm_getmaxcpu(kd);
	ncpus = kvm_getncpus(kd);
	printf("maxcpu %d ncpus %d\n", maxcpu, ncpus);
	for (cpu = 0; cpu < maxcpu; cpu++) {
		pcpu = kvm_getpcpu(kd, cpu);
		if (pcpu == (void *)-1) {
			fail("kvm_getpcpu", kd);
			continue;
		}
		if (pcpu == NULL) {
			printf("pcpu %d none\n", cpu);
			continue;
		}
		printf("pcpu %d ", cpu);
		for (i = 0; i < size; i++)
			printf("%02x", pcpu[i]);
		printf("\n");
		free(pcpu);
	}
	if (kvm_getpcpu(kd, maxcpu) != NULL || kvm_getpcpu(kd, -1) != NULL)
		fail("kvm_getpcpu past mp_maxcpus", kd);
	memset(nl, 0, sizeof(nl));
	nl[0].n_name = "_dpcpu_word";
	nl[1].n_name = "vnet_word";
	for (cpu = 0; cpu < maxcpu; cpu++) {
		if (kvm_dpcpu_setcpu(kd, cpu) != 0) {
			if (strncmp(kvm_geterr(kd), "kvm_dpcpu_setcpu: ",
			    18) != 0 ||
			    strstr(kvm_geterr(kd), "dpcpu_off is 0") == NULL)
				fail("kvm_dpcpu_setcpu's error", kd);
			printf("dpcpu %d refused\n", cpu);
			continue;
		}
		if (kvm_nlist2(kd, nl) != 0)
			fail("kvm_nlist2", kd);
		v = read64(kd, nl[0].n_value);
		printf("dpcpu %d 0x%llx 0x%llx\n", cpu,
		    (unsigned long long)nl[0].n_value, (unsigned long long)v);
	}
	if (kvm_dpcpu_setcpu(kd, (unsigned)maxcpu) != -1)
		fail("kvm_dpcpu_setcpu(mp_maxcpus)", kd);
	printf("vnet 0x%llx 0x%llx\n", (unsigned long long)nl[1].n_value,
	    (unsigned long long)read64(kd, nl[1].n_value));
	for (cpu = 0; cpu < ncpus; cpu++) {
		v = 0;
		if (kvm_read_zpcpu(kd, counter, &v, sizeof(v), cpu) !=
		    sizeof(v))
			fail("kvm_read_zpcpu", kd);
		printf("zpcpu %d 0x%llx\n", cpu, (unsigned long long)v);
	}
	if (kvm_read_zpcpu(kd, counter, &v, sizeof(v), -1) != -1)
		fail("kvm_read_zpcpu(-1)", kd);
	printf("counter 0x%llx\n",
	    (unsigned long long)kvm_counter_u64_fetch(kd, counter));
	kvm_close(kd);
	return (failed);
}

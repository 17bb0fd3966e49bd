/*
 * libkvm calls from exit paths: an atexit(3) handler and a thread-specific
 * data destructor fail a read, print kvm_geterr() and close the handle,
 * after the same threads have failed calls before. Debuggers close their
 * handles from such places; the library must not depend on thread-local
 * storage that is already gone there.
 *
 * Usage: exit_paths KERNEL CORE BAD_ADDRESS
 * Prints one line per step; exits 0 if every step worked.
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kvm.h>

static kvm_t *kd;
static kvaddr_t bad;
static pthread_key_t key;

/* Fails a read at the bad address and prints the error text. */
static int
fail_read(const char *where)
{
	char buf[8];

	if (kvm_read2(kd, bad, buf, sizeof(buf)) != -1) {
		printf("%s: read of a bad address did not fail\n", where);
		return (-1);
	}
	printf("%s: %s\n", where, kvm_geterr(kd));
	return (0);
}

static void
destructor(void *value)
{
	(void)value;
	if (fail_read("destructor") != 0)
		_exit(2);
}

static void *
thread(void *arg)
{
	(void)arg;
	if (fail_read("thread") != 0)
		return ((void *)1);
	/* The destructor runs when this thread exits. */
	pthread_setspecific(key, &key);
	return (NULL);
}

static void
at_exit(void)
{
	if (fail_read("atexit") != 0)
		_exit(3);
	if (kvm_close(kd) != 0) {
		printf("atexit: kvm_close failed\n");
		_exit(4);
	}
	printf("atexit: closed\n");
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	char errbuf[_POSIX2_LINE_MAX];
	pthread_t t;
	void *ret;

	if (argc != 4) {
		fprintf(stderr, "usage: exit_paths KERNEL CORE BAD_ADDRESS\n");
		return (1);
	}
	kd = kvm_open2(argv[1], argv[2], O_RDONLY, errbuf, NULL);
	if (kd == NULL) {
		printf("open: %s\n", errbuf);
		return (1);
	}
	bad = strtoull(argv[3], NULL, 0);
	if (pthread_key_create(&key, destructor) != 0 ||
	    pthread_create(&t, NULL, thread, NULL) != 0 ||
	    pthread_join(t, &ret) != 0 || ret != NULL)
		return (1);
	/* The main thread has failed a call too before exit(3) runs. */
	if (fail_read("main") != 0 || atexit(at_exit) != 0)
		return (1);
	return (0);
}

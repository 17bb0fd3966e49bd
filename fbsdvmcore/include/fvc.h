/*
 * libfbsdvmcore's C API (fvc.h), served by libkvm-rs's reader of FreeBSD
 * and Linux crash dumps of any architecture: relink a tool built against
 * libfbsdvmcore (lldb's FreeBSDKernel plugin) with -lfbsdvmcore to read
 * every dump this library reads.  Names, types and semantics are
 * libfbsdvmcore's; the differences are marked "Here:".
 */
#ifndef _FVC_H_
#define	_FVC_H_

#include <sys/types.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The kernel's version symbol and the key of its value, as kvm.h. */
#define	VRS_SYM		"_version"
#define	VRS_KEY		"VERSION"

typedef struct __fvc fvc_t;
struct proc;

/* An address of the dumped machine. */
typedef uint64_t fvc_addr_t;

/* Protection bits of a page (FreeBSD's sys/vm/vm.h values). */
typedef unsigned char fvc_vm_prot_t;
#define	FVC_VM_PROT_READ	((fvc_vm_prot_t)0x01)
#define	FVC_VM_PROT_WRITE	((fvc_vm_prot_t)0x02)
#define	FVC_VM_PROT_EXECUTE	((fvc_vm_prot_t)0x04)

/* A mapped page, passed to the fvc_walk_pages() callback. */
struct fvc_page {
	unsigned int	kp_version;	/* LIBFVC_WALK_PAGES_VERSION */
	fvc_addr_t	kp_paddr;	/* physical address */
	fvc_addr_t	kp_kmap_vaddr;	/* kernel-map address, or 0 */
	fvc_addr_t	kp_dmap_vaddr;	/* direct-map address, or 0 */
	fvc_vm_prot_t	kp_prot;	/* FVC_VM_PROT_* */
	off_t		kp_offset;	/* core-file offset, -1 if not dumped */
	size_t		kp_len;		/* bytes */
};

/* Kept from libkvm's kvm.h, as libfbsdvmcore keeps it. */
#define	SWIF_DEV_PREFIX	0x0002

#define	LIBFVC_WALK_PAGES_VERSION	2

/*
 * Opens kernel `execfile` and its dump `corefile` (both required).  A
 * NULL resolver resolves symbols from the kernel's symbol table;
 * otherwise resolver(name, &addr, resolver_data) stores the address of
 * `name` and returns 0 (non-zero when unknown); it is called only within
 * fvc_open().  Returns NULL on failure,
 * with a message in `errbuf` (_POSIX2_LINE_MAX bytes; may be NULL).
 * Here: without a resolver, the kernel must belong to the dump (its
 * version string is compared; KVM_NOVERIFY=1 in the environment skips
 * the check); KVM_PREAD=1 reads the core with pread(2) rather than
 * mapping it (a core another process may truncate);
 * and Linux vmcores open too (with their vmlinux or System.map).
 */
fvc_t	*fvc_open(const char *execfile, const char *corefile, char *errbuf,
	    int (*resolver)(const char *, fvc_addr_t *, void *),
	    void *resolver_data);

/* Closes the handle: 0, or -1 with errno EINVAL for NULL. */
int	 fvc_close(fvc_t *kd);

/*
 * The last error on the handle ("" when none, and for NULL).  Here: the
 * last error of the calling thread, so that threads may read at once.
 */
char	*fvc_geterr(fvc_t *kd);

/*
 * Reads `len` bytes at kernel virtual address `kva`: the count read
 * (short only when the core file ends early), or -1 when an address does
 * not translate (see fvc_geterr()).
 */
ssize_t	 fvc_read(fvc_t *kd, fvc_addr_t kva, void *buf, size_t len);

/* Where the kernel runs minus where it was linked; 0 when unknown. */
ssize_t	 fvc_kerndisp(fvc_t *kd);

/*
 * 1 when the dump's architecture is the host's, else 0.  Here: defined
 * (libfbsdvmcore declares it only).
 */
int	 fvc_native(fvc_t *kd);

/*
 * Calls cb(page, closure) for every mapped page; cb returns 0 to stop.
 * Returns 1 when the walk completed, 0 when it was stopped or failed.
 * Here: full dumps are walked too.
 */
typedef int fvc_walk_pages_cb_t(struct fvc_page *, void *);
int	 fvc_walk_pages(fvc_t *kd, fvc_walk_pages_cb_t *cb, void *closure);

#ifdef __cplusplus
}
#endif

#endif /* !_FVC_H_ */

//! `libfbsdvmcore.so`: libfbsdvmcore's C API (`fvc.h`: `fvc_open`,
//! `fvc_read`, `fvc_close`, `fvc_geterr`, `fvc_native`, `fvc_kerndisp`,
//! `fvc_walk_pages`) as a library of its own, for tools built against
//! libfbsdvmcore (lldb's FreeBSDKernel plugin). The functions are the
//! `kvm` library's (its `fvc` feature): one implementation, this package
//! only names the library.

// Links the library's fvc_* entry points into this one.
pub use kvm;

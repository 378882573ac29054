"""The seccomp filter of every RUN: the system calls Docker's default profile refuses.

The filter is built by libseccomp (through its ctypes binding, ``pyseccomp``) and
handed to bubblewrap as compiled BPF (``--seccomp FD``), which loads it just before
the command starts, after its own setup. It allows what Docker's default profile
allows and refuses, with EPERM, what that profile documents as blocked
(https://docs.docker.com/engine/security/seccomp/): kernel modules, kexec, reboot,
swap, clocks, kernel keyrings, BPF, perf events, userfaultfd, handle-based opens,
accounting and quotas, the kernel log (``syslog``: Docker allows it only with
``CAP_SYSLOG``, which a RUN never has), NUMA policy, the old 32-bit and obsolete calls, and every way
of mounting or of entering or creating namespaces (``mount``, ``umount2``,
``pivot_root``, the new mount API, ``setns``, ``unshare``, ``clone`` with a
namespace flag). ``clone3`` reports ENOSYS, as under Docker, so that C libraries
fall back to ``clone``, whose flags the filter can see. io_uring is refused, as
Docker has since 25.0. System calls of another architecture's ABI kill the process
(libseccomp's default for a foreign architecture).

The RUN is already unprivileged on the host (a user namespace of its own); the
filter narrows what remains of the kernel it can reach.
"""

from __future__ import annotations

import errno
import functools
import os

from distill.errors import SandboxError

#: Refused with EPERM (names libseccomp does not know on this system are skipped).
DENIED = (
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "finit_module", "get_kernel_syms", "get_mempolicy", "init_module",
    "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
    "mbind", "mount", "move_pages", "name_to_handle_at", "nfsservctl",
    "open_by_handle_at", "perf_event_open", "pivot_root", "query_module", "quotactl",
    "quotactl_fd", "reboot", "request_key", "set_mempolicy", "setns", "settimeofday",
    "stime", "swapoff", "swapon", "sysfs", "_sysctl", "syslog", "umount", "umount2",
    "unshare",
    "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
    # the new mount API and idmapped mounts, outside Docker's allow list
    "fsconfig", "fsmount", "fsopen", "fspick", "move_mount", "mount_setattr", "open_tree",
    # io_uring, removed from Docker's allow list
    "io_uring_enter", "io_uring_register", "io_uring_setup",
)

#: clone(2) flags that create namespaces: CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS,
#: NEWIPC, NEWUSER, NEWPID, NEWNET.
NAMESPACE_FLAGS = (0x00000080, 0x00020000, 0x02000000, 0x04000000, 0x08000000,
                   0x10000000, 0x20000000, 0x40000000)


@functools.cache
def filter_bpf() -> bytes:
    """The compiled filter, built once per process."""
    try:
        import pyseccomp as seccomp  # type: ignore[import-untyped]  # loads libseccomp
    except (ImportError, OSError) as exc:
        raise SandboxError(f"cannot load libseccomp: {exc}",
                           hint="install it: apt-get install libseccomp2") from exc
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED:
        try:
            rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except (ValueError, OSError):  # unknown to this libseccomp: nothing to refuse
            continue
    for flag in NAMESPACE_FLAGS:  # one rule per flag: any of them refuses the call
        rules.add_rule(seccomp.ERRNO(errno.EPERM), "clone",
                       seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    fd = os.memfd_create("distill-seccomp", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as f:
        rules.export_bpf(f)
        f.seek(0)
        return f.read()

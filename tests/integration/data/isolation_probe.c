/* A probe for tests/integration/test_isolation.py: attempts one escape from a RUN step
 * and prints, one line per attempt, what the kernel answered ("<what>: <strerror>", or
 * "<what>: ok ..."). It never prints data it reads, only how much: the tests look for a
 * canary's secret in the build's output, and the probe must not be the one to leak it.
 *
 *   probe packet MARKER SECONDS  AF_PACKET socket; counts packets for SECONDS, says
 *                                whether any carried MARKER
 *   probe unix NAME              connect to the abstract unix socket "\0NAME"
 *   probe ptrace PID             PTRACE_ATTACH, PTRACE_SEIZE and kill(PID, 0)
 *   probe module                 init_module, finit_module, delete_module, kexec_*
 *   probe mount                  mount(2) and the new mount API, also from a new user
 *                                namespace; the x32 and i386 entries of unshare
 *   probe handle PATH            name_to_handle_at + open_by_handle_at (the "shocker" escape)
 *   probe open PATH              open PATH read-only and read from it ("PATH open: ...")
 *   probe mknod PATH MAJ MIN     mknod a block device, then open it
 *   probe chroot PATH            the classic chroot breakout, then try to open PATH
 *   probe fds                    the descriptors it started with ("fds: 0 1 2")
 *   probe flip DIR               makes DIR/p/{3..9} and DIR/q -> /proc/self/fd, then swaps
 *                                DIR/p and DIR/q (RENAME_EXCHANGE) until DIR/stop exists:
 *                                a working directory DIR/p/N is a plain directory one
 *                                moment and /proc/self/fd/N the next
 *
 * Built with: gcc -static -O2 -o probe isolation_probe.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void report(const char *what, long rc) {
    if (rc < 0)
        printf("%s: %s\n", what, strerror(errno));
    else
        printf("%s: ok (%ld)\n", what, rc);
    fflush(stdout);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int packet(const char *marker, double seconds) {
    struct if_nameindex *ifs = if_nameindex();
    printf("interfaces:");
    for (struct if_nameindex *i = ifs; i && i->if_index; i++)
        printf(" %s", i->if_name);
    printf("\n");
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    report("packet socket", fd);
    if (fd < 0)
        return 0;
    static char buf[65536];
    long packets = 0, seen = 0;
    size_t mlen = strlen(marker);
    double end = now() + seconds;
    for (double left; (left = end - now()) > 0;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0)
            continue;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            continue;
        packets++;
        if (memmem(buf, n, marker, mlen))
            seen++;
    }
    printf("packets: %ld, with the marker: %ld\n", packets, seen);
    return 0;
}

static int unix_connect(const char *name) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    report("unix socket", fd);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    if (len > sizeof addr.sun_path - 1)
        len = sizeof addr.sun_path - 1;
    memcpy(addr.sun_path + 1, name, len);  /* abstract: sun_path[0] == 0 */
    report("unix connect", connect(fd, (struct sockaddr *)&addr,
                                   offsetof(struct sockaddr_un, sun_path) + 1 + len));
    return 0;
}

static int trace(pid_t pid) {
    report("ptrace attach", ptrace(PTRACE_ATTACH, pid, 0, 0));
    report("ptrace seize", ptrace(PTRACE_SEIZE, pid, 0, 0));
    report("kill 0", kill(pid, 0));
    return 0;
}

static int module(void) {
    static char image[64] = "\177ELF";
    report("init_module", syscall(SYS_init_module, image, sizeof image, ""));
    int fd = open("/proc/self/exe", O_RDONLY);
    report("finit_module", syscall(SYS_finit_module, fd, "", 0));
    report("delete_module", syscall(SYS_delete_module, "loop", O_NONBLOCK));
    report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    report("kexec_file_load", syscall(SYS_kexec_file_load, fd, -1, 1, "", 0));
    return 0;
}

/* Runs fn in a child so that a signal (seccomp's kill) is reported, not suffered. */
static void in_child(const char *what, long (*fn)(void)) {
    pid_t pid = fork();
    if (pid == 0) {
        long rc = fn();
        report(what, rc);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
        printf("%s: killed by signal %d\n", what, WTERMSIG(status));
        fflush(stdout);
    }
}

static long new_userns_then_mount(void) {
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
        return -1;
    return mount("none", "/mnt", "tmpfs", 0, NULL);
}

static long x32_unshare(void) {
    return syscall(0x40000000 | 272, CLONE_NEWUSER | CLONE_NEWNS);  /* x32 unshare */
}

static long i386_unshare(void) {
    long rc;
    __asm__ volatile("int $0x80" : "=a"(rc) : "a"(310), "b"(CLONE_NEWUSER | CLONE_NEWNS)
                     : "memory");  /* i386 unshare */
    if (rc < 0 && rc > -4096) {
        errno = -rc;
        return -1;
    }
    return rc;
}

static int mounts(void) {
    mkdir("/mnt", 0755);
    report("mount tmpfs", mount("none", "/mnt", "tmpfs", 0, NULL));
    report("mount proc", mount("proc", "/mnt", "proc", 0, NULL));
    report("mount bind", mount("/", "/mnt", NULL, MS_BIND | MS_REC, NULL));
    report("mount remount /", mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL));
    report("umount /proc", umount2("/proc", MNT_DETACH));
    report("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
    report("open_tree", syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */));
    in_child("mount from a new user namespace", new_userns_then_mount);
    in_child("x32 unshare", x32_unshare);
    in_child("i386 unshare", i386_unshare);
    report("unshare user+mount", unshare(CLONE_NEWUSER | CLONE_NEWNS));
    return 0;
}

static int handle(const char *path) {
    struct {
        struct file_handle h;
        unsigned char bytes[128];
    } fh = {.h.handle_bytes = 128};
    int mount_id;
    report("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, path, &fh.h,
                                        &mount_id, 0));
    /* the shocker escape: a handle to the host's root inode (ext4: inode 2) */
    struct {
        struct file_handle h;
        unsigned char bytes[8];
    } root = {.h.handle_bytes = 8, .h.handle_type = 1};
    unsigned int ino = 2, gen = 0;
    memcpy(root.h.f_handle, &ino, 4);
    memcpy(root.h.f_handle + 4, &gen, 4);
    report("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, &root.h, O_RDONLY));
    return 0;
}

static void open_and_read(const char *label, const char *path) {
    char what[256];
    snprintf(what, sizeof what, "%s open", label);
    int fd = open(path, O_RDONLY);
    report(what, fd);
    if (fd >= 0) {
        char buf[512];
        snprintf(what, sizeof what, "%s read", label);
        report(what, read(fd, buf, sizeof buf));
        close(fd);
    }
}

static int do_mknod(const char *path, unsigned maj, unsigned min) {
    char what[4200];
    snprintf(what, sizeof what, "%s mknod", path);
    report(what, mknod(path, S_IFBLK | 0600, makedev(maj, min)));
    open_and_read(path, path);
    return 0;
}

static int breakout(const char *path) {
    mkdir("/breakout", 0755);
    report("chroot /breakout", chroot("/breakout"));
    for (int i = 0; i < 64; i++)
        if (chdir("..") < 0)
            break;
    report("chroot .", chroot("."));
    open_and_read("target", path);
    return 0;
}

static int fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        report("fds", -1);
        return 0;
    }
    printf("fds:");
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
            printf(" %s", e->d_name);
    printf("\n");
    closedir(d);
    return 0;
}

static int flip(const char *dir) {
    char p[4096], q[4096], stop[4096], sub[4200];
    snprintf(p, sizeof p, "%s/p", dir);
    snprintf(q, sizeof q, "%s/q", dir);
    snprintf(stop, sizeof stop, "%s/stop", dir);
    mkdir(p, 0755);
    for (int n = 3; n <= 9; n++) {
        snprintf(sub, sizeof sub, "%s/%d", p, n);
        mkdir(sub, 0755);
    }
    report("symlink", symlink("/proc/self/fd", q));
    printf("flipping\n");
    fflush(stdout);
    long flips = 0;
    while (access(stop, F_OK) < 0) {
        /* mostly a directory; /proc/self/fd for short moments */
        if (renameat2(AT_FDCWD, p, AT_FDCWD, q, RENAME_EXCHANGE) < 0) {
            report("exchange", -1);
            return 1;
        }
        usleep(200);
        renameat2(AT_FDCWD, p, AT_FDCWD, q, RENAME_EXCHANGE);
        usleep(2000);
        flips++;
    }
    printf("flips: %ld\n", flips);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "packet"))
        return packet(argv[2], atof(argv[3]));
    if (argc >= 3 && !strcmp(argv[1], "unix"))
        return unix_connect(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "ptrace"))
        return trace(atoi(argv[2]));
    if (argc >= 2 && !strcmp(argv[1], "module"))
        return module();
    if (argc >= 2 && !strcmp(argv[1], "mount"))
        return mounts();
    if (argc >= 3 && !strcmp(argv[1], "handle"))
        return handle(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "open")) {
        open_and_read(argv[2], argv[2]);
        return 0;
    }
    if (argc >= 5 && !strcmp(argv[1], "mknod"))
        return do_mknod(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc >= 3 && !strcmp(argv[1], "chroot"))
        return breakout(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "fds"))
        return fds();
    if (argc >= 3 && !strcmp(argv[1], "flip"))
        return flip(argv[2]);
    fprintf(stderr, "usage: see the comment at the top of isolation_probe.c\n");
    return 2;
}

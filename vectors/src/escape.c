/* escape: tries every way out of the sandbox it knows and prints what each attempt got.
 * Only reading through /inputs/link-in (a symlink inside the mount) may succeed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void report(const char *what, int rc) {
    if (rc >= 0) printf("%s: ok\n", what);
    else printf("%s: %s\n", what, strerror(errno));
}

static void try_read(const char *path) {
    int fd = open(path, O_RDONLY);
    char label[512];
    snprintf(label, sizeof label, "read %s", path);
    if (fd >= 0) {
        char buf[64] = {0};
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        printf("%s: ok (%zd bytes)\n", label, n);
    } else {
        report(label, -1);
    }
}

int main(void) {
    try_read("/etc/passwd");
    try_read("../etc/passwd");
    try_read("/inputs/../etc/passwd");
    try_read("/inputs/../../../etc/passwd");
    try_read("/inputs/sub/../../outputs/x");
    try_read("/inputs/link-out");
    try_read("/inputs/link-abs");
    try_read("/inputs/link-loop");
    try_read("/inputs/link-in");
    report("write /inputs/hello.txt", open("/inputs/hello.txt", O_WRONLY));
    report("create /inputs/new.txt", open("/inputs/new.txt", O_WRONLY | O_CREAT, 0644));
    report("mkdir /inputs/d", mkdir("/inputs/d", 0755));
    report("unlink /inputs/hello.txt", unlink("/inputs/hello.txt"));
    report("symlink /outputs/evil -> /etc/passwd", symlink("/etc/passwd", "/outputs/evil"));
    report("symlink /outputs/up -> ..", symlink("..", "/outputs/up"));
    int fd = open("/outputs/file", O_WRONLY | O_CREAT, 0644);
    report("create /outputs/file", fd);
    if (fd >= 0) close(fd);
    report("link /outputs/hard -> /outputs/file", link("/outputs/file", "/outputs/hard"));
    report("rename /outputs/file -> /inputs/file", rename("/outputs/file", "/inputs/file"));
    report("mkdir /outputs/../escaped", mkdir("/outputs/../escaped", 0755));
    report("chdir /", chdir("/"));
    return 0;
}

/* fsprog: an interpreter of file-system programs, for comparing hosts.
 *
 * Reads a program from /inputs/prog (or the file named by argv[1], at most 1 MiB), then closes
 * it, so the fds it opens start at 5 (3 and 4 are /inputs and /outputs). One operation per line,
 * tokens separated by single spaces, numbers in decimal (negative allowed), "@" for an empty
 * path. Each operation calls WASI preview1 directly and prints one line: the line number,
 * the operation, the errno and the values it returned. Operations:
 *
 *   open DIRFD PATH OFLAGS FDFLAGS WRITE   path_open (WRITE 1: the fd_write right)
 *   write FD LEN BYTE                      fd_write LEN copies of BYTE (LEN <= 65536)
 *   pwrite FD OFFSET LEN BYTE              fd_pwrite
 *   read FD LEN                            fd_read; prints the count and an FNV-1a hash
 *   pread FD OFFSET LEN                    fd_pread
 *   seek FD OFFSET WHENCE                  fd_seek
 *   tell FD                                fd_tell
 *   trunc FD SIZE                          fd_filestat_set_size
 *   fstat FD                               fd_filestat_get: filetype, size
 *   stat DIRFD PATH FOLLOW                 path_filestat_get: filetype, size, ino
 *   mkdir DIRFD PATH                       path_create_directory
 *   deep DIRFD NAME N                      mkdir NAME, NAME/NAME, ... N levels deep
 *   rename DIRFD OLD NEWDIRFD NEW          path_rename
 *   unlink DIRFD PATH                      path_unlink_file
 *   rmdir DIRFD PATH                       path_remove_directory
 *   readdir FD BUFLEN COOKIE               fd_readdir: bytes used and their hash
 *   renumber FD TO                         fd_renumber
 *   close FD                               fd_close
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wasi/api.h>

#define LINE_MAX_BYTES 16384
#define DATA_MAX 65536
#define PATH_BUF 8192

static char program[1 << 20];
static char line[LINE_MAX_BYTES];
static uint8_t data[DATA_MAX];
static char path_buf[PATH_BUF];

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 14695981039346656037ULL; /* FNV-1a 64 offset basis */
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static char *tokens[8];

static int split(char *s) {
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(s, " ", &save); t && n < 8; t = strtok_r(NULL, " ", &save)) tokens[n++] = t;
    return n;
}

static uint64_t num(int i) { return strtoull(tokens[i], NULL, 10); }
static const char *path(int i) { return strcmp(tokens[i], "@") == 0 ? "" : tokens[i]; }

static uint32_t clamp_len(uint64_t n) { return n > DATA_MAX ? DATA_MAX : (uint32_t)n; }

static void run(int lineno, int argc) {
    const char *op = tokens[0];
    printf("%d %s -> ", lineno, op);
    __wasi_errno_t e;
    if (!strcmp(op, "open") && argc == 6) {
        __wasi_fd_t fd = 0;
        __wasi_rights_t rights = __WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_SEEK | __WASI_RIGHTS_FD_TELL |
                                 __WASI_RIGHTS_FD_READDIR | __WASI_RIGHTS_PATH_OPEN |
                                 __WASI_RIGHTS_FD_FILESTAT_GET | __WASI_RIGHTS_FD_FILESTAT_SET_SIZE;
        if (num(5)) rights |= __WASI_RIGHTS_FD_WRITE;
        e = __wasi_path_open((__wasi_fd_t)num(1), 0, path(2), (__wasi_oflags_t)num(3), rights, rights,
                             (__wasi_fdflags_t)num(4), &fd);
        printf("%u %u\n", e, e ? 0 : fd);
    } else if ((!strcmp(op, "write") && argc == 4) || (!strcmp(op, "pwrite") && argc == 5)) {
        int p = op[0] == 'p';
        uint32_t len = clamp_len(num(2 + p));
        memset(data, (int)num(3 + p), len);
        __wasi_ciovec_t iov = {data, len};
        __wasi_size_t n = 0;
        e = p ? __wasi_fd_pwrite((__wasi_fd_t)num(1), &iov, 1, num(2), &n)
              : __wasi_fd_write((__wasi_fd_t)num(1), &iov, 1, &n);
        printf("%u %u\n", e, (unsigned)(e ? 0 : n));
    } else if ((!strcmp(op, "read") && argc == 3) || (!strcmp(op, "pread") && argc == 4)) {
        int p = op[0] == 'p';
        uint32_t len = clamp_len(num(2 + p));
        __wasi_iovec_t iov = {data, len};
        __wasi_size_t n = 0;
        e = p ? __wasi_fd_pread((__wasi_fd_t)num(1), &iov, 1, num(2), &n)
              : __wasi_fd_read((__wasi_fd_t)num(1), &iov, 1, &n);
        printf("%u %u %016llx\n", e, (unsigned)(e ? 0 : n), (unsigned long long)fnv1a(data, e ? 0 : n));
    } else if (!strcmp(op, "seek") && argc == 4) {
        __wasi_filesize_t pos = 0;
        e = __wasi_fd_seek((__wasi_fd_t)num(1), (__wasi_filedelta_t)num(2), (__wasi_whence_t)num(3), &pos);
        printf("%u %llu\n", e, (unsigned long long)(e ? 0 : pos));
    } else if (!strcmp(op, "tell") && argc == 2) {
        __wasi_filesize_t pos = 0;
        e = __wasi_fd_tell((__wasi_fd_t)num(1), &pos);
        printf("%u %llu\n", e, (unsigned long long)(e ? 0 : pos));
    } else if (!strcmp(op, "trunc") && argc == 3) {
        printf("%u\n", __wasi_fd_filestat_set_size((__wasi_fd_t)num(1), num(2)));
    } else if (!strcmp(op, "fstat") && argc == 2) {
        __wasi_filestat_t st;
        memset(&st, 0, sizeof st);
        e = __wasi_fd_filestat_get((__wasi_fd_t)num(1), &st);
        printf("%u %u %llu\n", e, st.filetype, (unsigned long long)st.size);
    } else if (!strcmp(op, "stat") && argc == 4) {
        __wasi_filestat_t st;
        memset(&st, 0, sizeof st);
        e = __wasi_path_filestat_get((__wasi_fd_t)num(1), (__wasi_lookupflags_t)num(3), path(2), &st);
        printf("%u %u %llu %016llx\n", e, st.filetype, (unsigned long long)st.size, (unsigned long long)st.ino);
    } else if (!strcmp(op, "mkdir") && argc == 3) {
        printf("%u\n", __wasi_path_create_directory((__wasi_fd_t)num(1), path(2)));
    } else if (!strcmp(op, "deep") && argc == 4) {
        size_t name = strlen(tokens[2]), used = 0;
        uint64_t levels = num(3), i;
        e = 0;
        for (i = 0; i < levels && !e; i++) {
            if (used + name + 2 > PATH_BUF) break;
            if (used) path_buf[used++] = '/';
            memcpy(path_buf + used, tokens[2], name);
            used += name;
            path_buf[used] = 0;
            e = __wasi_path_create_directory((__wasi_fd_t)num(1), path_buf);
        }
        printf("%u %llu\n", e, (unsigned long long)(e ? i - 1 : i));
    } else if (!strcmp(op, "rename") && argc == 5) {
        printf("%u\n", __wasi_path_rename((__wasi_fd_t)num(1), path(2), (__wasi_fd_t)num(3), path(4)));
    } else if (!strcmp(op, "unlink") && argc == 3) {
        printf("%u\n", __wasi_path_unlink_file((__wasi_fd_t)num(1), path(2)));
    } else if (!strcmp(op, "rmdir") && argc == 3) {
        printf("%u\n", __wasi_path_remove_directory((__wasi_fd_t)num(1), path(2)));
    } else if (!strcmp(op, "readdir") && argc == 4) {
        __wasi_size_t used = 0;
        uint32_t len = clamp_len(num(2));
        e = __wasi_fd_readdir((__wasi_fd_t)num(1), data, len, num(3), &used);
        printf("%u %u %016llx\n", e, (unsigned)(e ? 0 : used), (unsigned long long)fnv1a(data, e ? 0 : used));
    } else if (!strcmp(op, "renumber") && argc == 3) {
        printf("%u\n", __wasi_fd_renumber((__wasi_fd_t)num(1), (__wasi_fd_t)num(2)));
    } else if (!strcmp(op, "close") && argc == 2) {
        printf("%u\n", __wasi_fd_close((__wasi_fd_t)num(1)));
    } else {
        printf("bad line\n");
    }
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "/inputs/prog";
    FILE *prog = fopen(name, "r");
    if (!prog) {
        printf("cannot open %s\n", name);
        return 2;
    }
    /* read it whole and close it first, so the program's own fds start at the lowest free one */
    size_t size = fread(program, 1, sizeof program - 1, prog);
    fclose(prog);
    program[size] = 0;
    int lineno = 0;
    for (char *at = program; *at;) {
        size_t len = strcspn(at, "\n");
        lineno++;
        if (len < LINE_MAX_BYTES) {
            memcpy(line, at, len);
            line[len] = 0;
            int n = split(line);
            if (n) run(lineno, n);
        } else {
            printf("%d line too long\n", lineno);
        }
        at += len + (at[len] == '\n');
    }
    return 0;
}

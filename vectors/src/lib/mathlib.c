/* mathlib: a library module that other modules import by CID (SPEC 5.4).
 *
 * Freestanding (no libc, no entry point, no start function): it exports mix and say and its
 * own memory. say writes to stdout through WASI fd_write, so it works on this module's memory.
 */

typedef unsigned int u32;

struct ciovec {
    const char *buf;
    u32 len;
};

__attribute__((import_module("wasi_snapshot_preview1"), import_name("fd_write")))
int fd_write(int fd, const struct ciovec *iovs, int count, u32 *written);

/* boost's hash_combine shape, in u32 arithmetic: mix(a, b) in [0, 1000003) */
__attribute__((export_name("mix")))
int mix(int a, int b) {
    u32 x = (u32)a * 2654435761u;
    x ^= (u32)b + 0x9e3779b9u + (x << 6) + (x >> 2);
    return (int)(x % 1000003u);
}

static char line[64];

/* writes "mathlib: n squared is N\n" to stdout; returns the bytes written */
__attribute__((export_name("say")))
int say(int n) {
    static const char head[] = "mathlib: ";
    static const char mid[] = " squared is ";
    char digits[12];
    u32 len = 0;
    for (u32 i = 0; head[i]; i++) line[len++] = head[i];
    u32 values[2] = {(u32)n, (u32)n * (u32)n};
    for (int v = 0; v < 2; v++) {
        u32 x = values[v], count = 0;
        do {
            digits[count++] = (char)('0' + x % 10);
            x /= 10;
        } while (x);
        while (count) line[len++] = digits[--count];
        if (v == 0)
            for (u32 i = 0; mid[i]; i++) line[len++] = mid[i];
    }
    line[len++] = '\n';
    struct ciovec iov = {line, len};
    u32 written = 0;
    fd_write(1, &iov, 1, &written);
    return (int)written;
}

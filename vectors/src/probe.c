/* probe: prints everything a host could leak into a result. Under cod every line
 * depends only on the job spec: clocks, random bytes, rand() seeded from time(0),
 * args, env, a directory listing with stat fields, and NaN bit patterns. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void bits(const char *name, double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    printf("nan %s %016llx\n", name, (unsigned long long)u);
}

static void bitsf(const char *name, float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    printf("nanf %s %08x\n", name, (unsigned)u);
}

static void list(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) { printf("ls %s: %s\n", dir, strerror(errno)); return; }
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0) { printf("stat %s: %s\n", path, strerror(errno)); continue; }
        printf("entry %s ino=%llu dev=%llu nlink=%llu size=%lld mode=%o mtime=%lld.%09ld atime=%lld ctime=%lld\n",
               path, (unsigned long long)st.st_ino, (unsigned long long)st.st_dev,
               (unsigned long long)st.st_nlink, (long long)st.st_size, (unsigned)(st.st_mode & S_IFMT),
               (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (long long)st.st_atim.tv_sec,
               (long long)st.st_ctim.tv_sec);
        if (S_ISDIR(st.st_mode)) list(path);
    }
    closedir(d);
}

int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++) printf("arg %d %s\n", i, argv[i]);
    for (char **e = environ; *e; e++) printf("env %s\n", *e);

    struct timespec ts;
    for (int i = 0; i < 3; i++) {
        clock_gettime(CLOCK_REALTIME, &ts);
        printf("realtime %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        printf("monotonic %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
    }
    clock_getres(CLOCK_MONOTONIC, &ts);
    printf("resolution %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
    struct timespec nap = {0, 250000000};
    nanosleep(&nap, NULL);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    printf("after-sleep %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);

    unsigned char rnd[16];
    getentropy(rnd, sizeof rnd);
    printf("random ");
    for (unsigned i = 0; i < sizeof rnd; i++) printf("%02x", rnd[i]);
    printf("\n");

    srand((unsigned)time(NULL));
    printf("rand %d %d %d\n", rand(), rand(), rand());

    list(argc > 1 ? argv[1] : "/inputs");

    volatile double zero = 0.0, one = 1.0, minus = -1.0, inf = INFINITY;
    bits("zero-div-zero", zero / zero);
    bits("inf-minus-inf", inf - inf);
    bits("sqrt-minus-one", sqrt(minus));
    bits("inf-times-zero", inf * zero);
    bits("neg-nan-plus-one", -(zero / zero) + one);
    volatile float fz = 0.0f, fi = INFINITY;
    bitsf("zero-div-zero", fz / fz);
    bitsf("inf-minus-inf", fi - fi);
    bitsf("neg-nan-times-two", -(fz / fz) * 2.0f);
    return 0;
}

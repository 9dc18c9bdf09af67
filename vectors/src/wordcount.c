/* wordcount: the Bacalhau word-count tutorial as a WASI command.
 * Every regular file under /inputs (recursively, in directory order) is counted;
 * per-file "lines words bytes path" lines go to /outputs/count.txt and the total
 * line goes to stdout. Files are read in 64 KiB blocks, never whole. */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK (64 * 1024)

static unsigned char buf[BLOCK];
static unsigned long long total_lines, total_words, total_bytes;
static FILE *out;

static int count_file(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { perror(path); return 1; }
    unsigned long long lines = 0, words = 0, bytes = 0;
    int in_word = 0;
    ssize_t n;
    while ((n = read(fd, buf, BLOCK)) > 0) {
        bytes += (unsigned long long)n;
        for (ssize_t i = 0; i < n; i++) {
            unsigned char c = buf[i];
            if (c == '\n') lines++;
            if (c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
                in_word = 0;
            } else if (!in_word) {
                in_word = 1;
                words++;
            }
        }
    }
    close(fd);
    if (n < 0) { perror(path); return 1; }
    fprintf(out, "%llu %llu %llu %s\n", lines, words, bytes, path);
    total_lines += lines; total_words += words; total_bytes += bytes;
    return 0;
}

static int walk(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) { perror(dir); return 1; }
    int failed = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) { perror(path); failed = 1; continue; }
        if (S_ISDIR(st.st_mode)) failed |= walk(path);
        else if (S_ISREG(st.st_mode)) failed |= count_file(path);
    }
    closedir(d);
    return failed;
}

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : "/inputs";
    out = fopen("/outputs/count.txt", "w");
    if (!out) { perror("/outputs/count.txt"); return 2; }
    int failed = walk(root);
    fclose(out);
    printf("%llu %llu %llu total\n", total_lines, total_words, total_bytes);
    return failed;
}

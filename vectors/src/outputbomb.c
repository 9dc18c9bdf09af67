/* outputbomb: writes without end to stdout (no argument) or to /outputs/big (argument
 * "file"). Under cod the run stops at the cap and no result is kept. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    static char line[4096];
    memset(line, 'x', sizeof line - 1);
    FILE *f = stdout;
    if (argc > 1 && strcmp(argv[1], "file") == 0) {
        f = fopen("/outputs/big", "w");
        if (!f) { perror("/outputs/big"); return 1; }
    }
    for (;;) fputs(line, f);
}

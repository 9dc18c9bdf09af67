/* membomb: allocates and touches 1 MiB blocks until malloc fails, then reports how far
 * it got. Under cod memory.grow fails at the spec's limit, so the count is the same
 * everywhere. */
#include <stdio.h>
#include <stdlib.h>

#define BLOCK (1 << 20)
static char *volatile kept[1 << 16];

int main(void) {
    unsigned long mib = 0;
    while (mib < sizeof kept / sizeof kept[0]) {
        char *p = malloc(BLOCK);
        if (!p) break;
        for (unsigned long i = 0; i < BLOCK; i += 4096) ((volatile char *)p)[i] = (char)mib;
        kept[mib++] = p;
    }
    printf("allocated %lu MiB before malloc failed\n", mib);
    return 0;
}

/* hello: the smallest WASI command. */
#include <stdio.h>

int main(void) {
    printf("hello from cod\n");
    return 0;
}

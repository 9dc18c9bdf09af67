/* mixer: a WASI command that imports mathlib by its CID (SPEC 5.4).
 *
 * The CID below is the module_cid of vectors/mathlib.wasm: vectors/build.py builds the
 * library first and rewrites the marked line with its CID before compiling this file, so
 * this source (and so this module's CID) names the library's exact bytes.
 */
#include <stdio.h>

#define MATHLIB "bafkreib6zozpwou6bnn2qsivozqxrjgybppbswmjjsjdaloy7gp3buga54" /* cod:module-cid lib/mathlib.c */

__attribute__((import_module(MATHLIB), import_name("mix"))) int mix(int a, int b);
__attribute__((import_module(MATHLIB), import_name("say"))) int say(int n);

int main(void) {
    printf("mix(3, 4) = %d\n", mix(3, 4));
    printf("mix(-1, 2147483647) = %d\n", mix(-1, 2147483647));
    fflush(stdout);
    int written = say(12);
    printf("say wrote %d bytes\n", written);
    return 0;
}

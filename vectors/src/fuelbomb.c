/* fuelbomb: an endless loop. Under cod it ends when its fuel runs out, the same way
 * on every machine. */
int main(void) {
    volatile unsigned long long n = 0;
    for (;;) n++;
}

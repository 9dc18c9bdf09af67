/* observe: a command built against the Dylibso Observe SDK's guest API (SPEC 5.5): spans,
   tags, a metric and logs, some of them hostile. None of it may change the results: the
   expected result CID is the same with the host's telemetry on and off. */
#include <stdio.h>
#include <string.h>

#define OBSERVE(name) __attribute__((import_module("dylibso:observe/api"), import_name(name)))

OBSERVE("span-enter") void observe_span_enter(const char *name, size_t length);
OBSERVE("span-exit") void observe_span_exit(void);
OBSERVE("span-tags") void observe_span_tags(const char *tags, size_t length);
OBSERVE("log") void observe_log(int level, const char *message, size_t length);
OBSERVE("metric") void observe_metric(int format, const char *metric, size_t length);

static void text(void (*call)(const char *, size_t), const char *s) { call(s, strlen(s)); }

static unsigned long fib(unsigned n) {
    unsigned long a = 0, b = 1;
    for (unsigned i = 0; i < n; i++) {
        unsigned long next = a + b;
        a = b;
        b = next;
    }
    return a;
}

int main(void) {
    char metric[64];
    unsigned long total = 0;
    text(observe_span_enter, "main");
    text(observe_span_tags, "vector:observe,lang:c");
    for (unsigned i = 10; i < 20; i++) {
        text(observe_span_enter, "fib");
        total += fib(i);
        observe_span_exit();
    }
    snprintf(metric, sizeof metric, "fib.total:%lu|g", total);
    observe_metric(1, metric, strlen(metric));
    observe_log(3, "done", 4);
    observe_log(1, (const char *)0xFFFFFFF0u, 0xFFFFu); /* out of bounds: ignored, never a trap */
    observe_log(2, "\xff\xfe", 2);                      /* not UTF-8: ignored */
    observe_span_exit();
    observe_span_exit(); /* no span open: ignored */
    printf("sum of fib(10..19) = %lu\n", total);
    return 0;
}

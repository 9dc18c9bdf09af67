/* thread_import: imports wasi-threads' thread-spawn. cod refuses it before it runs. */
__attribute__((import_module("wasi"), import_name("thread-spawn")))
int thread_spawn(int start_arg);

int main(void) {
    return thread_spawn(0);
}

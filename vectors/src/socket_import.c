/* socket_import: imports a socket extension (WasmEdge's sock_open) under the preview1
 * module name. cod refuses it before it runs. */
__attribute__((import_module("wasi_snapshot_preview1"), import_name("sock_open")))
int sock_open(int af, int socktype, int *fd);

int main(void) {
    int fd;
    return sock_open(1, 1, &fd);
}

/* A plain C WASI program, built with Debian's clang and wasi-libc: proof
 * that wasmbox runs any wasm32-wasip1 program, not only Rust ones. */
#include <stdio.h>

int main(int argc, char **argv) {
    printf("hello from C\n");
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    return 0;
}

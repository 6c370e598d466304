/* The runc baseline of the start-time benchmark: a static musl hello. */
#include <stdio.h>

int main(int argc, char **argv) {
    printf("Hello from a runc container!\n");
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    return 0;
}

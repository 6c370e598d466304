/* The runc baseline of the idle-memory benchmark: a static musl program
 * that says it is up and then sleeps until it is killed. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("sleeper: up\n");
    fflush(stdout);
    for (;;)
        pause();
}

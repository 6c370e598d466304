/* pause: the pod sandbox image's binary, for the CRI tests' local sandbox
 * image (no registry). wasmbox never runs it: under the wasmbox runtime
 * handler the shim holds the pod's namespaces itself. It is a real pause
 * all the same, so the image also works under runc. */
#include <signal.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

int main(void) {
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    for (;;) pause();
}

/* What SQLite's unix VFS expects of POSIX and WASI preview 1 lacks, for the
 * benchmark's wasm32-wasip1 build of the SQLite shell. WASI has no owners,
 * modes or advisory locks: ownership calls succeed without effect, and
 * locks always succeed (one process owns the database, as in a container
 * that is its only user). Force-included with clang's -include. */
#ifndef WASMBOX_WASI_COMPAT_H
#define WASMBOX_WASI_COMPAT_H
#include <sys/types.h>
#include <fcntl.h>
#include <unistd.h>

#ifndef F_RDLCK
#define F_RDLCK 0
#define F_WRLCK 1
#define F_UNLCK 2
#define F_GETLK 5
#define F_SETLK 6
#define F_SETLKW 7
#endif

static inline int wasmbox_fchmod(int fd, mode_t mode) { (void)fd; (void)mode; return 0; }
static inline int wasmbox_fchown(int fd, uid_t u, gid_t g) { (void)fd; (void)u; (void)g; return 0; }
static inline uid_t wasmbox_geteuid(void) { return 0; }
static inline uid_t wasmbox_getuid(void) { return 0; }
#define getuid wasmbox_getuid
static inline int wasmbox_chmod(const char *path, mode_t mode) { (void)path; (void)mode; return 0; }
#define fchmod wasmbox_fchmod
#define chmod wasmbox_chmod
#define fchown wasmbox_fchown
#define geteuid wasmbox_geteuid
#endif

/* WASI preview 1 has no user database; the SQLite shell only asks it for a
 * home directory, and falls back to $HOME without one. */
#ifndef WASMBOX_PWD_H
#define WASMBOX_PWD_H
#include <sys/types.h>
struct passwd {
    char *pw_name;
    char *pw_dir;
};
static inline struct passwd *getpwuid(uid_t uid) { (void)uid; return 0; }
#endif

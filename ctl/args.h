/*
 * args: agoractl's command-line options and file reading, shared by its
 * command modules.
 */
#ifndef AGORA_CTL_ARGS_H
#define AGORA_CTL_ARGS_H

#include <stddef.h>

/* The value of --name in argv[from..]; NULL when absent. A flag given
 * without a value is "" (reported as bad by the caller's checks). */
const char *args_opt(int argc, char **argv, int from, const char *name);

/* Every --option in argv[from..] is one of `known` (NULL-terminated); an
 * unknown one is said on stderr and 0 returned. */
int args_known(int argc, char **argv, int from, const char *const *known);

/* A whole file of at most max bytes, NUL-terminated (the caller frees it),
 * its size in *len; NULL with the reason on stderr. */
char *args_read_file(const char *path, long max, size_t *len);

#endif

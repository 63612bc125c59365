#ifndef KAPPA_SYS_H
#define KAPPA_SYS_H
#include <spawn.h>

/* System calls Glibc's Swift module does not show (they need _GNU_SOURCE): descriptors that are
   close-on-exec from the moment they exist, so that a child started by another thread at the
   same time can never inherit them. */

/* pipe2(fds, O_CLOEXEC): 0, or -1 with errno. */
int kappa_pipe_cloexec(int fds[2]);

/* accept4(socket, NULL, NULL, SOCK_CLOEXEC): the connection's descriptor, or -1 with errno. */
int kappa_accept_cloexec(int socket);

/* posix_spawn_file_actions_addclosefrom_np(actions, from): the child closes every descriptor
   from `from` up, close-on-exec or not. 0, or an error number. */
int kappa_spawn_closefrom(posix_spawn_file_actions_t *actions, int from);

#endif

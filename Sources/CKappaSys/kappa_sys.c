#define _GNU_SOURCE
#include "kappa_sys.h"
#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <unistd.h>

#if defined(__linux__)

int kappa_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int kappa_accept_cloexec(int socket) {
    return accept4(socket, NULL, NULL, SOCK_CLOEXEC);
}

int kappa_spawn_closefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

#else
/* Without pipe2 and accept4 (macOS) the flag can only be set after the call, and without
   addclosefrom_np only descriptors marked close-on-exec are closed. */

int kappa_pipe_cloexec(int fds[2]) {
    if (pipe(fds) != 0) return -1;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    return 0;
}

int kappa_accept_cloexec(int socket) {
    int fd = accept(socket, NULL, NULL);
    if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

int kappa_spawn_closefrom(posix_spawn_file_actions_t *actions, int from) {
    (void)actions;
    (void)from;
    return 0;
}

#endif

# Declarations of csrc/zs_uring.h that exist on every platform: io_uring's
# availability and the benchmark's io_uring echo server.

cdef extern from "zs_uring.h" nogil:
    enum:
        ZS_URING_CAPS_REQUIRED

    const char *zs_uring_cap_name(unsigned bit_index)
    int zs_uring_available(unsigned *caps, char *reason, size_t reason_len)
    int zs_uring_echo_server_run(int listen_fd, int mode, int stop_fd, char *err, size_t errlen)

/*
 * zs_bytes.h -- byte searching for RecvBuffer: memmem where the C library
 * has it (glibc, the BSDs, macOS), a memchr + memcmp loop elsewhere (MSVC).
 */
#ifndef ZS_BYTES_H
#define ZS_BYTES_H

#include <stddef.h>
#include <string.h>

#if defined(__GLIBC__) || defined(__APPLE__) || defined(__FreeBSD__) || \
    defined(__NetBSD__) || defined(__OpenBSD__) || defined(__DragonFly__)
#  define ZS_HAVE_MEMMEM 1
#else
#  define ZS_HAVE_MEMMEM 0
#endif

/* First occurrence of needle[0:k] in hay[0:n], or NULL; an empty needle is at hay. */
static inline const char *zs_memmem(const char *hay, size_t n, const char *needle, size_t k)
{
    if (k == 0)
        return hay;
    if (k > n)
        return NULL;
    if (k == 1)
        return (const char *)memchr(hay, (unsigned char)needle[0], n);
#if ZS_HAVE_MEMMEM
    return (const char *)memmem(hay, n, needle, k);
#else
    {
        const char *p = hay;
        const char *last = hay + (n - k);
        while (p <= last) {
            p = (const char *)memchr(p, (unsigned char)needle[0], (size_t)(last - p) + 1);
            if (p == NULL)
                return NULL;
            if (memcmp(p + 1, needle + 1, k - 1) == 0)
                return p;
            p++;
        }
        return NULL;
    }
#endif
}

#endif /* ZS_BYTES_H */

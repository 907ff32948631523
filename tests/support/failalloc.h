/* failalloc.h — allocation failure injection for unit tests.
 *
 * Linking failalloc.c replaces glibc's malloc, calloc, realloc and free (glibc
 * lets a program replace them together); the replacements forward to glibc and
 * count the calling thread's allocations only, so Criterion's own threads are
 * never affected. Sanitizer builds keep their own allocator: there
 * failalloc_available() is false and tests that need injection skip. */
#ifndef ORION_TEST_FAILALLOC_H
#define ORION_TEST_FAILALLOC_H

#include <stdbool.h>

/* True if injection works in this build (glibc, no sanitizer allocator). */
bool failalloc_available(void);

/* The nth allocation from now on this thread fails, once (1 = the next one);
 * 0 turns injection off. */
void failalloc_nth(long nth);

/* After n more allocations on this thread, every allocation fails until
 * failalloc_off(); n = 0 fails the next one. */
void failalloc_after(long n);

/* Turns injection off on this thread. */
void failalloc_off(void);

#endif

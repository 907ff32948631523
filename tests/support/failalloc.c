/* failalloc.c — see failalloc.h. */
#include "failalloc.h"

#include <stddef.h>
#include <stdlib.h> /* defines __GLIBC__ */

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED_ALLOCATOR 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED_ALLOCATOR 1
#endif

#if defined(__GLIBC__) && !defined(SANITIZED_ALLOCATOR)
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *block, size_t size);
extern void __libc_free(void *block);

/* Allocations this thread may still make before failing; -1: no limit. */
static _Thread_local long allocations_left = -1;
/* Whether failing continues after the first failure. */
static _Thread_local bool keep_failing;

static bool allocation_fails(void)
{
	if (allocations_left < 0)
		return false;
	if (allocations_left > 0) {
		allocations_left--;
		return false;
	}
	if (!keep_failing)
		allocations_left = -1;
	return true;
}

void *malloc(size_t size)
{
	return allocation_fails() ? NULL : __libc_malloc(size);
}

void *calloc(size_t count, size_t size)
{
	return allocation_fails() ? NULL : __libc_calloc(count, size);
}

void *realloc(void *block, size_t size)
{
	return allocation_fails() ? NULL : __libc_realloc(block, size);
}

void free(void *block)
{
	__libc_free(block);
}

bool failalloc_available(void)
{
	return true;
}

void failalloc_nth(long nth)
{
	keep_failing = false;
	allocations_left = nth > 0 ? nth - 1 : -1;
}

void failalloc_after(long n)
{
	keep_failing = true;
	allocations_left = n >= 0 ? n : -1;
}

void failalloc_off(void)
{
	allocations_left = -1;
}
#else
bool failalloc_available(void)
{
	return false;
}

void failalloc_nth(long nth)
{
	(void)nth;
}

void failalloc_after(long n)
{
	(void)n;
}

void failalloc_off(void)
{
}
#endif

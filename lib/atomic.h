/*
 * atomic.h - the few atomics helpers shoal needs on top of <stdatomic.h>.
 *
 * Every shared atomic is checked lock-free at compile time: a lock-based
 * fallback would keep its lock in one process's memory, which other
 * processes cannot see.
 */
#ifndef SHOAL_ATOMIC_H
#define SHOAL_ATOMIC_H

#include <stdatomic.h>
#include <stdint.h>

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");

typedef _Atomic uint32_t shoal__atomic_u32;
typedef _Atomic uint64_t shoal__atomic_u64;

/* One cache line; shared cursors written by different processes each own one. */
#define SHOAL_CACHELINE 64

/* Tell the CPU we are in a spin loop (saves power, yields the pipeline to a
 * sibling hyperthread). */
static inline void shoal__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

#endif /* SHOAL_ATOMIC_H */

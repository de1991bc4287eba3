/*
 * Just enough io_uring for bench's ideal daemon: one ring per thread,
 * requests queued in the submission ring, and one system call that submits
 * them and waits for a completion. Linux's own header and system calls, no
 * liburing.
 */
#ifndef BENCH_URING_H
#define BENCH_URING_H

#include <linux/io_uring.h>
#include <stddef.h>

struct uring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
	void *sq_map, *sqe_map;
	size_t sq_map_len, sqe_map_len;
	unsigned queued; /* entries not yet submitted */
};

/* 0, or -errno (ENOSYS, EPERM where io_uring is absent or forbidden). */
int uring_init(struct uring *u, unsigned entries);
void uring_free(struct uring *u);

/* The next submission entry, zeroed, or NULL when the ring is full. */
struct io_uring_sqe *uring_queue(struct uring *u);

/* Makes room for n more entries, submitting what is queued (without
 * waiting) if the ring is too full; 0, or -1 if it cannot. */
int uring_reserve(struct uring *u, unsigned n);

/* Submits what is queued and waits for at least one completion; -errno on failure. */
int uring_submit_and_wait(struct uring *u);

/* The oldest completion not yet consumed, or NULL; uring_consume frees it. */
struct io_uring_cqe *uring_peek(struct uring *u);
void uring_consume(struct uring *u);

#endif

#include "uring.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int uring_init(struct uring *u, unsigned entries)
{
	struct io_uring_params p;
	memset(u, 0, sizeof *u);
	memset(&p, 0, sizeof p);
	/* Completions are run by the thread when it waits, not by interrupts
	 * elsewhere: the cheapest mode for a ring that one thread owns. */
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	u->fd = (int)syscall(__NR_io_uring_setup, entries, &p);
	if (u->fd < 0)
		return -errno;
	if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
		close(u->fd);
		return -ENOSYS; /* kernels before 5.4: not worth a second mapping here */
	}
	size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	u->sq_map_len = sq_len > cq_len ? sq_len : cq_len;
	u->sqe_map_len = p.sq_entries * sizeof(struct io_uring_sqe);
	u->sq_map = mmap(NULL, u->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			 u->fd, IORING_OFF_SQ_RING);
	u->sqe_map = mmap(NULL, u->sqe_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			  u->fd, IORING_OFF_SQES);
	if (u->sq_map == MAP_FAILED || u->sqe_map == MAP_FAILED) {
		int e = errno;
		uring_free(u);
		return -e;
	}
	char *ring = u->sq_map; /* one mapping holds both rings */
	u->sq_tail = (unsigned *)(ring + p.sq_off.tail);
	u->sq_mask = (unsigned *)(ring + p.sq_off.ring_mask);
	u->sq_array = (unsigned *)(ring + p.sq_off.array);
	u->cq_head = (unsigned *)(ring + p.cq_off.head);
	u->cq_tail = (unsigned *)(ring + p.cq_off.tail);
	u->cq_mask = (unsigned *)(ring + p.cq_off.ring_mask);
	u->cqes = (struct io_uring_cqe *)(ring + p.cq_off.cqes);
	u->sqes = u->sqe_map;
	return 0;
}

void uring_free(struct uring *u)
{
	if (u->sq_map && u->sq_map != MAP_FAILED)
		munmap(u->sq_map, u->sq_map_len);
	if (u->sqe_map && u->sqe_map != MAP_FAILED)
		munmap(u->sqe_map, u->sqe_map_len);
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
	u->sq_map = u->sqe_map = NULL;
}

struct io_uring_sqe *uring_queue(struct uring *u)
{
	unsigned tail = *u->sq_tail;
	if (u->queued > *u->sq_mask)
		return NULL;
	unsigned i = tail & *u->sq_mask;
	struct io_uring_sqe *sqe = &u->sqes[i];
	memset(sqe, 0, sizeof *sqe);
	u->sq_array[i] = i;
	/* the kernel reads the entry only after the tail moves past it */
	__atomic_store_n(u->sq_tail, tail + 1, __ATOMIC_RELEASE);
	u->queued++;
	return sqe;
}

static int enter(struct uring *u, unsigned wait_for)
{
	for (;;) {
		long k = syscall(__NR_io_uring_enter, u->fd, u->queued, wait_for,
				 wait_for ? IORING_ENTER_GETEVENTS : 0, NULL, 0);
		if (k >= 0) {
			u->queued -= (unsigned)k;
			return 0;
		}
		if (errno != EINTR)
			return -errno;
	}
}

int uring_reserve(struct uring *u, unsigned n)
{
	unsigned size = *u->sq_mask + 1;
	if (size - u->queued < n && enter(u, 0) < 0)
		return -1;
	return size - u->queued < n ? -1 : 0;
}

int uring_submit_and_wait(struct uring *u)
{
	return enter(u, 1);
}

struct io_uring_cqe *uring_peek(struct uring *u)
{
	unsigned head = *u->cq_head;
	if (head == __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE))
		return NULL;
	return &u->cqes[head & *u->cq_mask];
}

void uring_consume(struct uring *u)
{
	__atomic_store_n(u->cq_head, *u->cq_head + 1, __ATOMIC_RELEASE);
}

#include "jobs.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "device.h"
#include "event_loop.h"
#include "loop_runner.h"
#include "worker.h"

/* ---- completions: any thread to the loop ---- */

void completions_post(struct completions *c, struct job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&c->lock);
	bool was_empty = !c->head;
	if (c->tail)
		c->tail->next = job;
	else
		c->head = job;
	c->tail = job;
	pthread_mutex_unlock(&c->lock);
	/* One wake-up per batch: the loop takes the whole list when it wakes. */
	if (!was_empty)
		return;
	uint64_t one = 1;
	while (write(c->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

void jobs_release(struct job *job)
{
	device_job_freed(job);
	job_free(job);
}

static void finish(struct jobs *js, struct job *job)
{
	job->state = JOB_DONE;
	job->finish(js->d, job->session, job);
	jobs_release(job);
}

void jobs_drain(struct jobs *js)
{
	uint64_t count;
	while (read(js->done.efd, &count, sizeof(count)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&js->done.lock);
	struct job *job = js->done.head;
	js->done.head = js->done.tail = NULL;
	pthread_mutex_unlock(&js->done.lock);
	while (job) {
		struct job *next = job->next;
		finish(js, job);
		job = next;
	}
}

static void on_completion(struct event_loop *loop, int fd, void *data, int mask)
{
	(void)loop;
	(void)fd;
	(void)mask;
	jobs_drain(data);
}

int jobs_init(struct jobs *js, struct daemon *d, struct event_loop *loop,
	      struct loop_runner *runner)
{
	*js = (struct jobs){ .d = d, .runner = runner };
	pthread_mutex_init(&js->done.lock, NULL);
	js->done.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (js->done.efd < 0)
		return -1;
	return el_add_fd(loop, js->done.efd, EL_READ, on_completion, js);
}

static void free_list(struct job *job)
{
	while (job) {
		struct job *next = job->next;
		job_free(job);
		job = next;
	}
}

void jobs_destroy(struct jobs *js, struct event_loop *loop)
{
	/* Answers that arrived after the loop stopped have nobody to go to. */
	free_list(js->done.head);
	free_list(js->pending);
	js->done.head = js->done.tail = js->pending = js->pending_tail = NULL;
	if (js->done.efd >= 0) {
		el_del_fd(loop, js->done.efd);
		close(js->done.efd);
	}
	pthread_mutex_destroy(&js->done.lock);
}

/* ---- the loop's pending list ---- */

void jobs_submit(struct jobs *js, struct job *job)
{
	job->next = NULL;
	job->state = JOB_PENDING;
	if (js->pending_tail)
		js->pending_tail->next = job;
	else
		js->pending = job;
	js->pending_tail = job;
}

bool jobs_have_pending(const struct jobs *js)
{
	return js->pending;
}

static struct job *pop_pending(struct jobs *js)
{
	struct job *job = js->pending;
	if (job) {
		js->pending = job->next;
		if (!js->pending)
			js->pending_tail = NULL;
		job->next = NULL;
	}
	return job;
}

static bool unlink_pending(struct jobs *js, struct job *job)
{
	struct job *prev = NULL;
	for (struct job *j = js->pending; j; prev = j, j = j->next) {
		if (j != job)
			continue;
		if (prev)
			prev->next = j->next;
		else
			js->pending = j->next;
		if (js->pending_tail == j)
			js->pending_tail = prev;
		j->next = NULL;
		return true;
	}
	return false;
}

bool jobs_run_pending(struct jobs *js)
{
	struct job *job;
	while ((job = pop_pending(js))) {
		struct worker *w = job->worker;
		if (!worker_try_claim(w)) {
			worker_enqueue(w, job);
			continue;
		}
		struct runner_call call;
		runner_call_begin(js->runner, &call);
		worker_run_claimed(w, job);
		worker_release(w);
		if (!runner_call_end(js->runner, &call)) {
			/* The loop is another thread's now: answer as a worker would. */
			completions_post(&js->done, job);
			return false;
		}
		finish(js, job);
	}
	return true;
}

void jobs_abandon(struct jobs *js, struct job *job)
{
	job->session = NULL;
	if (job->kind == JOB_DISPOSE)
		return; /* the card still owes it */
	switch (atomic_load(&job->state)) {
	case JOB_PENDING:
		if (unlink_pending(js, job))
			jobs_release(job);
		break;
	case JOB_QUEUED:
		/* the worker may have started it since: then it is posted */
		if (worker_cancel(job->worker, job))
			jobs_release(job);
		break;
	default: break;
	}
}

/* polkit's questions, on a thread of their own (see polkit_check.h). */
#include "polkit_check.h"

#include <stdlib.h>

#include "config.h"

#ifdef HAVE_POLKIT

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <polkit/polkit.h>

#include "event_loop.h"
#include "wire.h"

struct question {
	uint64_t session_id;
	pid_t pid;
	uid_t uid;
	char action[64];
	char reader[WIRE_MAX_READERNAME];
	bool has_reader;
	enum polkit_verdict verdict;
	char why[320];
	GCancellable *cancel;       /* its own: the session may leave before the answer */
	bool dropped;               /* the session left: nobody wants the answer (pc->lock) */
	struct question *next;      /* in asked or answered */
	struct question *live_next; /* in live, until the loop has taken its answer */
};

struct polkit_check {
	polkit_answer_fn *fn;
	void *ctx;
	int efd;
	pthread_t thread;
	pthread_mutex_t lock;
	struct question *asked, *asked_tail; /* for the thread, FIFO */
	struct question *answered, *answered_tail;
	struct question *live; /* every question not yet taken back by the loop */
	unsigned n_live;
	bool stop;
	/* the thread's */
	GMainContext *context;
	GMainLoop *main_loop;
	GCancellable *cancel;
	PolkitAuthority *authority;
	unsigned outstanding; /* questions polkitd has not answered yet */
};

static void push(struct question **head, struct question **tail, struct question *q)
{
	q->next = NULL;
	if (*tail)
		(*tail)->next = q;
	else
		*head = q;
	*tail = q;
}

/* Loop, holding pc->lock: q leaves the live list. */
static void unlive(struct polkit_check *pc, struct question *q)
{
	for (struct question **p = &pc->live; *p; p = &(*p)->live_next) {
		if (*p == q) {
			*p = q->live_next;
			pc->n_live--;
			return;
		}
	}
}

static void free_question(struct question *q)
{
	g_object_unref(q->cancel);
	free(q);
}

static void no_answer(struct question *q, GError *err)
{
	q->verdict = POLKIT_NO_ANSWER;
	snprintf(q->why, sizeof(q->why), "%s", err ? err->message : "unknown error");
}

/*
 * An error answering a question: no polkitd to ask is "no answer"; any
 * other (polkitd refusing this caller, a rule's error, a timeout) refuses
 * the client, as pcscd refuses on every error. A scardd without root must
 * be the actions' owner to ask about other users' processes (the
 * org.freedesktop.policykit.owner annotation of the installed actions).
 */
static void failed(struct question *q, GError *err)
{
	bool absent = g_error_matches(err, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN) ||
		      g_error_matches(err, G_DBUS_ERROR, G_DBUS_ERROR_NAME_HAS_NO_OWNER) ||
		      g_error_matches(err, G_DBUS_ERROR, G_DBUS_ERROR_NO_SERVER) ||
		      g_error_matches(err, G_DBUS_ERROR, G_DBUS_ERROR_SPAWN_SERVICE_NOT_FOUND) ||
		      g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED);
	no_answer(q, err);
	if (!absent)
		q->verdict = POLKIT_REFUSED;
}

/* Thread: an answer for the loop. */
static void answer(struct polkit_check *pc, struct question *q)
{
	pthread_mutex_lock(&pc->lock);
	push(&pc->answered, &pc->answered_tail, q);
	pthread_mutex_unlock(&pc->lock);
	uint64_t one = 1;
	while (write(pc->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/* Thread: ends the main loop once stopping and nothing is outstanding. */
static gboolean maybe_quit(gpointer data)
{
	struct polkit_check *pc = data;
	pthread_mutex_lock(&pc->lock);
	bool stop = pc->stop;
	pthread_mutex_unlock(&pc->lock);
	if (stop && !pc->outstanding)
		g_main_loop_quit(pc->main_loop);
	return G_SOURCE_REMOVE;
}

struct pending {
	struct polkit_check *pc;
	struct question *q;
};

static void on_checked(GObject *source, GAsyncResult *res, gpointer data)
{
	struct pending *p = data;
	struct polkit_check *pc = p->pc;
	struct question *q = p->q;
	GError *err = NULL;
	PolkitAuthorizationResult *result =
		polkit_authority_check_authorization_finish(POLKIT_AUTHORITY(source), res, &err);
	if (!result) {
		failed(q, err);
		g_clear_error(&err);
	} else {
		q->verdict = polkit_authorization_result_get_is_authorized(result) ? POLKIT_ALLOWED
										   : POLKIT_REFUSED;
		g_object_unref(result);
	}
	free(p);
	answer(pc, q);
	pc->outstanding--;
	maybe_quit(pc);
}

/*
 * Thread: sends every question asked so far. They run side by side, so one
 * waiting for a user's password (an auth_admin rule, answered through the
 * user's polkit agent, as pcscd allows) holds no other client back.
 */
static gboolean send_questions(gpointer data)
{
	struct polkit_check *pc = data;
	pthread_mutex_lock(&pc->lock);
	struct question *list = pc->asked;
	pc->asked = pc->asked_tail = NULL;
	pthread_mutex_unlock(&pc->lock);
	while (list) {
		struct question *q = list;
		list = q->next;
		GError *err = NULL;
		pthread_mutex_lock(&pc->lock);
		bool dropped = q->dropped;
		pthread_mutex_unlock(&pc->lock);
		if (dropped) {
			answer(pc, q);
			continue;
		}
		if (!pc->authority)
			pc->authority = polkit_authority_get_sync(pc->cancel, &err);
		struct pending *p = pc->authority ? malloc(sizeof(*p)) : NULL;
		if (!p) {
			no_answer(q, err);
			g_clear_error(&err);
			answer(pc, q);
			continue;
		}
		*p = (struct pending){ pc, q };
		PolkitSubject *subject = polkit_unix_process_new_for_owner(q->pid, 0, (gint)q->uid);
		PolkitDetails *details = polkit_details_new();
		if (q->has_reader)
			polkit_details_insert(details, "reader", q->reader);
		pc->outstanding++;
		polkit_authority_check_authorization(
			pc->authority, subject, q->action, details,
			POLKIT_CHECK_AUTHORIZATION_FLAGS_ALLOW_USER_INTERACTION, q->cancel,
			on_checked, p);
		g_object_unref(details);
		g_object_unref(subject);
	}
	return G_SOURCE_REMOVE;
}

static void *thread_main(void *arg)
{
	struct polkit_check *pc = arg;
	g_main_context_push_thread_default(pc->context);
	g_main_loop_run(pc->main_loop);
	if (pc->authority)
		g_object_unref(pc->authority);
	pc->authority = NULL;
	/* GDBus frees a proxy's signal subscriptions from this context's idle
	 * callbacks: let them run */
	while (g_main_context_iteration(pc->context, FALSE))
		;
	g_main_context_pop_thread_default(pc->context);
	return NULL;
}

/* On the loop: every answer that came in. */
static void on_answers(struct event_loop *loop, int fd, void *data, int mask)
{
	struct polkit_check *pc = data;
	(void)loop;
	(void)mask;
	uint64_t count;
	while (read(fd, &count, sizeof(count)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&pc->lock);
	struct question *list = pc->answered;
	pc->answered = pc->answered_tail = NULL;
	for (struct question *q = list; q; q = q->next)
		unlive(pc, q);
	pthread_mutex_unlock(&pc->lock);
	while (list) {
		struct question *q = list;
		list = q->next;
		if (!q->dropped) /* (only the loop sets it, and it is the loop here) */
			pc->fn(pc->ctx, q->session_id, q->verdict, q->why);
		free_question(q);
	}
}

struct polkit_check *polkit_check_start(struct event_loop *loop, polkit_answer_fn *fn, void *ctx)
{
	struct polkit_check *pc = calloc(1, sizeof(*pc));
	if (!pc)
		return NULL;
	pc->fn = fn;
	pc->ctx = ctx;
	pc->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&pc->lock, NULL);
	pc->cancel = g_cancellable_new();
	pc->context = g_main_context_new();
	pc->main_loop = g_main_loop_new(pc->context, FALSE);
	if (pc->efd < 0 || el_add_fd(loop, pc->efd, EL_READ, on_answers, pc) < 0)
		goto fail;
	if (pthread_create(&pc->thread, NULL, thread_main, pc) != 0) {
		el_del_fd(loop, pc->efd);
		goto fail;
	}
	return pc;
fail:
	if (pc->efd >= 0)
		close(pc->efd);
	g_main_loop_unref(pc->main_loop);
	g_main_context_unref(pc->context);
	g_object_unref(pc->cancel);
	pthread_mutex_destroy(&pc->lock);
	free(pc);
	return NULL;
}

bool polkit_check_ask(struct polkit_check *pc, uint64_t session_id, pid_t pid, uid_t uid,
		      const char *action, const char *reader)
{
	if (reader && !g_utf8_validate(reader, -1, NULL))
		return false; /* polkit's details are UTF-8: no reader has such a name */
	pthread_mutex_lock(&pc->lock);
	bool full = pc->n_live >= POLKIT_MAX_QUESTIONS;
	pthread_mutex_unlock(&pc->lock);
	struct question *q = full ? NULL : calloc(1, sizeof(*q));
	if (!q)
		return false;
	q->cancel = g_cancellable_new();
	q->session_id = session_id;
	q->pid = pid;
	q->uid = uid;
	snprintf(q->action, sizeof(q->action), "%s", action);
	if (reader) {
		snprintf(q->reader, sizeof(q->reader), "%s", reader);
		q->has_reader = true;
	}
	pthread_mutex_lock(&pc->lock);
	push(&pc->asked, &pc->asked_tail, q);
	q->live_next = pc->live;
	pc->live = q;
	pc->n_live++;
	pthread_mutex_unlock(&pc->lock);
	g_main_context_invoke(pc->context, send_questions, pc);
	return true;
}

void polkit_check_forget(struct polkit_check *pc, uint64_t session_id)
{
	if (!pc)
		return;
	pthread_mutex_lock(&pc->lock);
	for (struct question *q = pc->live; q; q = q->live_next) {
		if (q->session_id == session_id && !q->dropped) {
			q->dropped = true;
			g_cancellable_cancel(q->cancel); /* (thread-safe) its call ends */
		}
	}
	pthread_mutex_unlock(&pc->lock);
}

static void free_list(struct question *q)
{
	while (q) {
		struct question *next = q->next;
		free_question(q);
		q = next;
	}
}

void polkit_check_stop(struct polkit_check *pc, struct event_loop *loop)
{
	if (!pc)
		return;
	pthread_mutex_lock(&pc->lock);
	pc->stop = true;
	for (struct question *q = pc->live; q; q = q->live_next)
		g_cancellable_cancel(q->cancel); /* questions in progress end at once */
	pthread_mutex_unlock(&pc->lock);
	g_cancellable_cancel(pc->cancel);
	g_main_context_invoke(pc->context, maybe_quit, pc);
	pthread_join(pc->thread, NULL);
	el_del_fd(loop, pc->efd);
	close(pc->efd);
	free_list(pc->asked);
	free_list(pc->answered);
	g_main_loop_unref(pc->main_loop);
	g_main_context_unref(pc->context);
	g_object_unref(pc->cancel);
	pthread_mutex_destroy(&pc->lock);
	free(pc);
}

#else /* built without polkit */

struct polkit_check *polkit_check_start(struct event_loop *loop, polkit_answer_fn *fn, void *ctx)
{
	(void)loop;
	(void)fn;
	(void)ctx;
	return NULL;
}

bool polkit_check_ask(struct polkit_check *pc, uint64_t session_id, pid_t pid, uid_t uid,
		      const char *action, const char *reader)
{
	(void)pc;
	(void)session_id;
	(void)pid;
	(void)uid;
	(void)action;
	(void)reader;
	return false;
}

void polkit_check_stop(struct polkit_check *pc, struct event_loop *loop)
{
	(void)pc;
	(void)loop;
}

void polkit_check_forget(struct polkit_check *pc, uint64_t session_id)
{
	(void)pc;
	(void)session_id;
}

#endif

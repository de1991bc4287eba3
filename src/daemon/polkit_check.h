/*
 * polkit, as pcsc-lite asks it: whether a client may use the daemon at all
 * (access_pcsc, when it connects) and a reader (access_card, with the
 * reader's name as the "reader" detail, at each SCardConnect). So the
 * rules distributions already ship for pcscd keep working.
 *
 * polkitd is asked on the system bus by one thread of its own, never by
 * the loop: a question goes in with the session's id, the answer comes back
 * on the loop through an eventfd, and a session gone meanwhile is simply
 * not found. Built only with polkit-gobject-1 (meson -Dpolkit); without it
 * polkit_check_start returns NULL and nothing is asked.
 */
#ifndef SCARDD_POLKIT_CHECK_H
#define SCARDD_POLKIT_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define POLKIT_ACTION_PCSC "org.debian.pcsc-lite.access_pcsc"
#define POLKIT_ACTION_CARD "org.debian.pcsc-lite.access_card"

struct event_loop;
struct polkit_check;

enum polkit_verdict {
	POLKIT_ALLOWED,
	POLKIT_REFUSED,
	POLKIT_NO_ANSWER, /* no system bus or no polkitd: why says which */
};
/* POLKIT_REFUSED with a why: polkitd answered with an error (also a refusal, as pcscd). */

/* On the loop, once per question asked. */
typedef void polkit_answer_fn(void *ctx, uint64_t session_id, enum polkit_verdict verdict,
			      const char *why);

/* Starts the asking thread; NULL when built without polkit or out of resources. */
struct polkit_check *polkit_check_start(struct event_loop *loop, polkit_answer_fn *fn, void *ctx);
/* At most this many questions wait for polkitd at once; more are refused. */
#define POLKIT_MAX_QUESTIONS 512

/*
 * Asks about the process pid of uid; reader may be NULL. false: not asked
 * (POLKIT_MAX_QUESTIONS waiting, or out of memory): the caller refuses.
 */
bool polkit_check_ask(struct polkit_check *pc, uint64_t session_id, pid_t pid, uid_t uid,
		      const char *action, const char *reader);
/* The session left: its questions are cancelled and their answers never delivered. */
void polkit_check_forget(struct polkit_check *pc, uint64_t session_id);
/* Cancels what is being asked, joins the thread; unanswered questions are dropped. */
void polkit_check_stop(struct polkit_check *pc, struct event_loop *loop);

#endif

#include "vslot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pcsclite.h>

void vslot_init(struct vslot *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &attr);
	pthread_condattr_destroy(&attr);
	/* the daemon's first wait returns at once: look at the slot */
	s->event_gen = 1;
	s->protocol = -1;
}

void vslot_destroy(struct vslot *s)
{
	vcard_free(s->card);
	free(s->card_name);
	s->card = NULL;
	s->card_name = NULL;
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
}

static void changed(struct vslot *s)
{
	s->event_gen++;
	pthread_cond_broadcast(&s->cond);
}

void vslot_insert(struct vslot *s, struct vcard *card, const char *name)
{
	char *copy = name ? strdup(name) : NULL;
	pthread_mutex_lock(&s->lock);
	vcard_free(s->card);
	free(s->card_name);
	s->card = card;
	s->card_name = copy;
	s->powered = false;
	s->protocol = -1;
	s->card_gen++;
	changed(s);
	pthread_mutex_unlock(&s->lock);
}

bool vslot_remove(struct vslot *s)
{
	pthread_mutex_lock(&s->lock);
	bool had = s->card;
	vcard_free(s->card);
	free(s->card_name);
	s->card = NULL;
	s->card_name = NULL;
	s->powered = false;
	s->protocol = -1;
	if (had)
		changed(s);
	pthread_mutex_unlock(&s->lock);
	return had;
}

void vslot_set_mute(struct vslot *s, bool mute)
{
	pthread_mutex_lock(&s->lock);
	if (s->card && s->mute != mute) {
		/*
		 * The card is re-seated: daemons power a card up only when it
		 * arrives, so this is how they notice it stopped (or started)
		 * answering to reset, and show it as mute (or present).
		 */
		s->powered = false;
		s->protocol = -1;
		s->card_gen++;
		changed(s);
	}
	s->mute = mute;
	pthread_mutex_unlock(&s->lock);
}

void vslot_set_fast(struct vslot *s, bool fast)
{
	pthread_mutex_lock(&s->lock);
	s->fast = fast;
	pthread_mutex_unlock(&s->lock);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

RESPONSECODE vslot_presence(struct vslot *s)
{
	pthread_mutex_lock(&s->lock);
	s->seen_gen = s->event_gen;
	long long now = now_ms();
	bool present = s->card;
	if (present && s->reported_present && s->reported_card_gen != s->card_gen) {
		/*
		 * The daemon last saw an earlier card and has not seen it leave
		 * (a swap, or remove + insert between two of its looks): the
		 * slot reads empty for a moment, as a hand swapping cards makes it.
		 */
		s->gap_until_ms = now + VSLOT_SWAP_GAP_MS;
		s->gap_wake = true;
		s->reported_card_gen = s->card_gen;
	}
	if (now >= s->gap_until_ms)
		s->gap_wake = false;
	if (present && now < s->gap_until_ms)
		present = false;
	s->reported_present = present;
	if (present)
		s->reported_card_gen = s->card_gen;
	pthread_mutex_unlock(&s->lock);
	return present ? IFD_ICC_PRESENT : IFD_ICC_NOT_PRESENT;
}

enum vslot_wake vslot_wait(struct vslot *s, int timeout_ms)
{
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	if (timeout_ms < 0)
		timeout_ms = 0;
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	enum vslot_wake why;
	pthread_mutex_lock(&s->lock);
	for (;;) {
		if (s->closed) {
			why = VSLOT_WOKE_CLOSED;
			break;
		}
		if (s->stop_pending) {
			why = VSLOT_WOKE_STOP;
			break;
		}
		if (s->event_gen != s->seen_gen) {
			why = VSLOT_WOKE_EVENT;
			s->event_wakes++;
			break;
		}
		/* the swapped-in card "arrives" when the gap ends */
		long long gap_left = s->gap_wake ? s->gap_until_ms - now_ms() : 0;
		if (s->gap_wake && gap_left <= 0) {
			why = VSLOT_WOKE_GAP;
			break;
		}
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > deadline.tv_sec ||
		    (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec)) {
			why = VSLOT_WOKE_TIMEOUT;
			break;
		}
		struct timespec until = deadline;
		if (s->gap_wake) {
			struct timespec gap = now;
			gap.tv_sec += gap_left / 1000;
			gap.tv_nsec += (long)(gap_left % 1000) * 1000000L;
			if (gap.tv_nsec >= 1000000000L) {
				gap.tv_sec++;
				gap.tv_nsec -= 1000000000L;
			}
			if (gap.tv_sec < until.tv_sec ||
			    (gap.tv_sec == until.tv_sec && gap.tv_nsec < until.tv_nsec))
				until = gap;
		}
		pthread_cond_timedwait(&s->cond, &s->lock, &until);
	}
	s->stop_pending = false;
	pthread_mutex_unlock(&s->lock);
	return why;
}

RESPONSECODE vslot_wait_event(struct vslot *s, int timeout_ms)
{
	vslot_wait(s, timeout_ms);
	return IFD_SUCCESS;
}

void vslot_stop(struct vslot *s)
{
	pthread_mutex_lock(&s->lock);
	s->stop_pending = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

void vslot_close(struct vslot *s)
{
	pthread_mutex_lock(&s->lock);
	s->closed = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

RESPONSECODE vslot_power(struct vslot *s, DWORD action, PUCHAR atr, PDWORD atr_len)
{
	RESPONSECODE rc = IFD_SUCCESS;
	pthread_mutex_lock(&s->lock);
	if (action == IFD_POWER_DOWN) {
		s->powered = false;
		s->protocol = -1;
		if (s->card)
			vcard_reset(s->card);
		if (atr_len)
			*atr_len = 0;
	} else if (action != IFD_POWER_UP && action != IFD_RESET) {
		rc = IFD_NOT_SUPPORTED;
	} else if (!s->card) {
		rc = IFD_ICC_NOT_PRESENT;
	} else if (s->mute) {
		s->powered = false;
		rc = IFD_ERROR_POWER_ACTION; /* no answer to reset */
	} else {
		size_t len;
		const uint8_t *a = vcard_atr(s->card, &len);
		if (!atr || !atr_len || *atr_len < len) {
			rc = IFD_ERROR_INSUFFICIENT_BUFFER;
		} else {
			vcard_reset(s->card);
			s->powered = true;
			s->protocol = vcard_default_protocol(s->card);
			memcpy(atr, a, len);
			*atr_len = len;
		}
	}
	if (rc != IFD_SUCCESS && atr_len)
		*atr_len = 0;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

RESPONSECODE vslot_set_protocol(struct vslot *s, DWORD protocol)
{
	RESPONSECODE rc = IFD_SUCCESS;
	pthread_mutex_lock(&s->lock);
	if (!s->card) {
		rc = IFD_ICC_NOT_PRESENT;
	} else if (s->mute) {
		rc = IFD_ERROR_PTS_FAILURE;
	} else {
		unsigned offered = vcard_protocols(s->card);
		if (protocol == SCARD_PROTOCOL_T0 && (offered & VCARD_PROTO_T0))
			s->protocol = VCARD_T0;
		else if (protocol == SCARD_PROTOCOL_T1 && (offered & VCARD_PROTO_T1))
			s->protocol = VCARD_T1;
		else
			rc = IFD_PROTOCOL_NOT_SUPPORTED;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

RESPONSECODE vslot_transmit(struct vslot *s, DWORD protocol, const uint8_t *tx, size_t tx_len,
			    uint8_t *rx, PDWORD rx_len)
{
	RESPONSECODE rc = IFD_SUCCESS;
	DWORD cap = *rx_len;
	*rx_len = 0;
	pthread_mutex_lock(&s->lock);
	if (!s->card) {
		rc = IFD_ICC_NOT_PRESENT;
	} else if (s->mute) {
		rc = IFD_RESPONSE_TIMEOUT;
	} else if (!s->powered) {
		rc = IFD_COMMUNICATION_ERROR;
	} else if (s->fast) {
		if (cap < 2) {
			rc = IFD_ERROR_INSUFFICIENT_BUFFER;
		} else {
			rx[0] = 0x90;
			rx[1] = 0x00;
			*rx_len = 2;
			s->commands++;
		}
	} else {
		unsigned offered = vcard_protocols(s->card);
		int t = (protocol == 0 && (offered & VCARD_PROTO_T0))   ? VCARD_T0
			: (protocol == 1 && (offered & VCARD_PROTO_T1)) ? VCARD_T1
									: s->protocol;
		size_t n = vcard_transmit(s->card, t, tx, tx_len, rx, cap);
		if (n == 0) {
			rc = IFD_ERROR_INSUFFICIENT_BUFFER;
		} else {
			*rx_len = n;
			s->commands++;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

RESPONSECODE vslot_atr(struct vslot *s, PUCHAR atr, PDWORD atr_len)
{
	RESPONSECODE rc = IFD_SUCCESS;
	pthread_mutex_lock(&s->lock);
	if (!s->card || !s->powered) {
		rc = IFD_ICC_NOT_PRESENT;
		*atr_len = 0;
	} else {
		size_t len;
		const uint8_t *a = vcard_atr(s->card, &len);
		if (*atr_len < len) {
			rc = IFD_ERROR_INSUFFICIENT_BUFFER;
		} else {
			memcpy(atr, a, len);
			*atr_len = len;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

void vslot_describe(struct vslot *s, unsigned index, char *buf, size_t cap)
{
	pthread_mutex_lock(&s->lock);
	char atr[2 * VCARD_MAX_ATR + 1] = "";
	if (s->card) {
		size_t len;
		const uint8_t *a = vcard_atr(s->card, &len);
		for (size_t i = 0; i < len; i++)
			snprintf(atr + 2 * i, 3, "%02X", a[i]);
	}
	snprintf(buf, cap,
		 "slot %u card=%s mute=%s fast=%s powered=%s atr=%s commands=%lu event_wakes=%lu "
		 "file=%s",
		 index, s->card ? "present" : "absent", s->mute ? "yes" : "no",
		 s->fast ? "yes" : "no", s->powered ? "yes" : "no", s->card ? atr : "-",
		 s->commands, s->event_wakes, s->card_name ? s->card_name : "-");
	pthread_mutex_unlock(&s->lock);
}

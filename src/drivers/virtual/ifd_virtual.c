/*
 * ifd-virtual: an IFD handler (driver API v3) with readers and cards in
 * memory, for scardd and for pcsc-lite's pcscd alike.
 *
 * DEVICENAME names the configuration file (vconfig.h); each reader.conf.d
 * stanza becomes one instance whose slots are the readers "Name 00 00",
 * "Name 00 01", ... The daemon learns about card events through the polling
 * function it gets from TAG_IFD_POLLING_THREAD_WITH_TIMEOUT, so insertions and
 * removals made on the control channel show at once.
 *
 * Installed as a bundle with USB ids in its Info.plist, it is also a USB
 * driver: a daemon's hotplug names the device ("usb:..."), and a file in the
 * bundle's Contents/usb stands for each interface that is a reader (vusb.h).
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ifdhandler.h>
#include <reader.h>
#include <scardd_ifd.h>

#include "vinstance.h"
#include "vusb.h"

#ifndef SCARD_ATTR_VIRTUAL_CONTROL
/* Vendor attribute: "slot=N control=PATH", how `scard virtual` finds the
 * control channel of a reader through any PC/SC daemon. */
#define SCARD_ATTR_VIRTUAL_CONTROL SCARD_ATTR_VALUE(SCARD_CLASS_VENDOR_DEFINED, 0xA1F0)
#endif

#define CM_IOCTL_GET_FEATURE_REQUEST_CODE SCARD_CTL_CODE(3400)

/* Both daemons export log_msg(priority, fmt, ...); weak so the library also
 * loads where nothing provides it. */
extern void log_msg(int priority, const char *fmt, ...) __attribute__((weak));

enum { PRIO_DEBUG = 0, PRIO_INFO = 1, PRIO_ERROR = 2, PRIO_CRITICAL = 3 };

static void say(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(int prio, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (log_msg)
		log_msg(prio, "ifd-virtual: %s", buf);
	else if (prio >= PRIO_ERROR)
		fprintf(stderr, "ifd-virtual: %s\n", buf);
}

/* Instances live until the library is unloaded: a daemon thread may still be
 * leaving a wait on a slot when the channel closes. */
static pthread_mutex_t instances_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vinstance *instances;

static struct vinstance *find_instance(DWORD lun)
{
	pthread_mutex_lock(&instances_lock);
	struct vinstance *inst = instances;
	while (inst && (inst->gone || inst->key != (lun >> 16)))
		inst = inst->next;
	pthread_mutex_unlock(&instances_lock);
	return inst;
}

static struct vslot *find_slot(DWORD lun)
{
	struct vinstance *inst = find_instance(lun);
	if (!inst || (lun & 0xFFFF) >= inst->n_slots)
		return NULL;
	return &inst->slots[lun & 0xFFFF];
}

__attribute__((destructor)) static void free_instances(void)
{
	pthread_mutex_lock(&instances_lock);
	while (instances) {
		struct vinstance *next = instances->next;
		vinstance_free(instances);
		instances = next;
	}
	pthread_mutex_unlock(&instances_lock);
}

/*
 * A USB device that was unplugged fails every call at once, whatever its
 * daemon knows yet, as real hardware does (libccid then answers
 * IFD_NO_SUCH_DEVICE): its node is gone.
 */
static bool device_gone(const struct vinstance *inst)
{
	return inst->node[0] && access(inst->node, F_OK) != 0;
}

/* A slow card's work (delay.N): it ends early when its USB device is unplugged. */
static void slow_card(const struct vinstance *inst, unsigned ms)
{
	for (unsigned done = 0; done < ms && !device_gone(inst);) {
		unsigned step = ms - done < 20 ? ms - done : 20;
		struct timespec ts = { 0, (long)step * 1000000L };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		done += step;
	}
}

static RESPONSECODE open_instance(DWORD lun, struct vconfig *cfg, const char *source,
				  const char *node)
{
	if (find_instance(lun)) /* already open: a daemon asking again for another slot */
		return IFD_SUCCESS;
	char err[1024];
	struct vinstance *inst = vinstance_new(cfg, err, sizeof(err));
	if (!inst) {
		say(PRIO_ERROR, "%s: %s", source, err);
		return IFD_COMMUNICATION_ERROR;
	}
	inst->key = lun >> 16;
	snprintf(inst->source, sizeof(inst->source), "%s", source);
	snprintf(inst->node, sizeof(inst->node), "%s", node ? node : "");
	if (vinstance_start_control(inst, err, sizeof(err))) {
		say(PRIO_ERROR, "%s: %s", source, err);
		vinstance_free(inst);
		return IFD_COMMUNICATION_ERROR;
	}
	pthread_mutex_lock(&instances_lock);
	inst->next = instances;
	instances = inst;
	pthread_mutex_unlock(&instances_lock);
	say(PRIO_INFO, "%s: %u reader%s, control channel %s (thread %ld)", source, inst->n_slots,
	    inst->n_slots == 1 ? "" : "s", inst->cfg.control ? inst->cfg.control : "none",
	    (long)gettid());
	return IFD_SUCCESS;
}

/*
 * A USB interface: the device node must be one the daemon may open
 * read-write, as libusb does (so a daemon without the rights fails here, as
 * with libccid), and the interface
 * needs its configuration file; otherwise, as libccid for an interface that
 * is not CCID or a device it cannot open, IFD_NO_SUCH_DEVICE.
 */
static RESPONSECODE open_usb(DWORD lun, const char *name)
{
	struct vusb_device dev;
	if (!vusb_parse(name, &dev)) {
		say(PRIO_ERROR, "%s: not a usb:VVVV/PPPP:libudev:IF:/dev/bus/usb/BBB/DDD name",
		    name);
		return IFD_COMMUNICATION_ERROR;
	}
	/* libusb opens the node read-write; asking is enough here (and opening
	 * an emulated usbdevfs node would start umockdev's ioctl emulation) */
	if (access(dev.node, R_OK | W_OK) != 0) {
		say(PRIO_ERROR, "%s: cannot open %s: %s", name, dev.node, strerror(errno));
		return IFD_NO_SUCH_DEVICE;
	}
	Dl_info info;
	char dir[VUSB_PATH_MAX], paths[2][VUSB_PATH_MAX];
	if (!dladdr((void *)open_usb, &info) ||
	    !vusb_dir_from_library(info.dli_fname, dir, sizeof(dir)) ||
	    !vusb_config_paths(dir, &dev, paths)) {
		say(PRIO_ERROR, "%s: cannot tell where this bundle's usb directory is", name);
		return IFD_COMMUNICATION_ERROR;
	}
	const char *path = NULL;
	for (int i = 0; i < 2 && !path; i++)
		if (access(paths[i], F_OK) == 0)
			path = paths[i];
	if (!path) {
		say(PRIO_DEBUG, "%s: interface %u is not a reader (no %s or %s)", name,
		    dev.interface, paths[0], paths[1]);
		return IFD_NO_SUCH_DEVICE;
	}
	struct vconfig cfg;
	vconfig_defaults(&cfg);
	char err[1024];
	if (vconfig_load(&cfg, path, err, sizeof(err))) {
		say(PRIO_ERROR, "%s: %s", name, err);
		vconfig_clear(&cfg);
		return IFD_COMMUNICATION_ERROR;
	}
	RESPONSECODE rc = open_instance(lun, &cfg, name, dev.node);
	vconfig_clear(&cfg);
	return rc;
}

RESPONSECODE IFDHCreateChannelByName(DWORD Lun, LPSTR DeviceName)
{
	if (vusb_is_usb(DeviceName))
		return open_usb(Lun, DeviceName);
	struct vconfig cfg;
	vconfig_defaults(&cfg);
	if (DeviceName && DeviceName[0]) {
		char err[1024];
		if (vconfig_load(&cfg, DeviceName, err, sizeof(err))) {
			say(PRIO_ERROR, "%s", err);
			vconfig_clear(&cfg);
			return IFD_COMMUNICATION_ERROR;
		}
	}
	RESPONSECODE rc = open_instance(Lun, &cfg,
					DeviceName && DeviceName[0] ? DeviceName : "defaults",
					NULL);
	vconfig_clear(&cfg);
	return rc;
}

RESPONSECODE IFDHCreateChannel(DWORD Lun, DWORD Channel)
{
	(void)Channel;
	struct vconfig cfg;
	vconfig_defaults(&cfg);
	RESPONSECODE rc = open_instance(Lun, &cfg, "defaults", NULL);
	vconfig_clear(&cfg);
	return rc;
}

RESPONSECODE IFDHCloseChannel(DWORD Lun)
{
	pthread_mutex_lock(&instances_lock);
	struct vinstance *inst = instances;
	while (inst && (inst->gone || inst->key != (Lun >> 16)))
		inst = inst->next;
	if (inst)
		inst->gone = true;
	pthread_mutex_unlock(&instances_lock);
	if (inst) {
		vinstance_close(inst);
		/* one line per instance, at its first close: tests count them */
		say(PRIO_INFO, "%s: closed%s (thread %ld)", inst->source,
		    inst->unplugged ? " (device removed)" : "", (long)gettid());
	}
	return IFD_SUCCESS;
}

static RESPONSECODE put_bytes(PDWORD len, PUCHAR value, const void *src, size_t n)
{
	if (!len || !value || *len < n)
		return IFD_ERROR_INSUFFICIENT_BUFFER;
	memcpy(value, src, n);
	*len = n;
	return IFD_SUCCESS;
}

static RESPONSECODE put_byte(PDWORD len, PUCHAR value, unsigned v)
{
	uint8_t b = (uint8_t)v;
	return put_bytes(len, value, &b, 1);
}

static RESPONSECODE wait_event(DWORD lun, int timeout_ms)
{
	struct vslot *s = find_slot(lun);
	if (!s)
		return IFD_NO_SUCH_DEVICE;
	return vslot_wait_event(s, timeout_ms);
}

static RESPONSECODE stop_wait(DWORD lun)
{
	struct vslot *s = find_slot(lun);
	if (s)
		vslot_stop(s);
	return IFD_SUCCESS;
}

RESPONSECODE IFDHGetCapabilities(DWORD Lun, DWORD Tag, PDWORD Length, PUCHAR Value)
{
	struct vinstance *inst = find_instance(Lun);
	unsigned slot = Lun & 0xFFFF;
	if (!inst || slot >= inst->n_slots)
		return IFD_NO_SUCH_DEVICE;
	struct vslot *s = &inst->slots[slot];
	switch (Tag) {
	case TAG_IFD_ATR:
	case SCARD_ATTR_ATR_STRING: return vslot_atr(s, Value, Length);
	case TAG_IFD_SLOTNUM: return put_byte(Length, Value, slot);
	case TAG_IFD_SLOTS_NUMBER: return put_byte(Length, Value, inst->n_slots);
	case TAG_IFD_SIMULTANEOUS_ACCESS:
		return put_byte(Length, Value, 16); /* several stanzas may share the library */
	case TAG_IFD_THREAD_SAFE:
	case TAG_IFD_SLOT_THREAD_SAFE: return put_byte(Length, Value, 1);
	case TAG_IFD_POLLING_THREAD_KILLABLE: return put_byte(Length, Value, 0);
	case TAG_IFD_DEVICE_REMOVED: return put_byte(Length, Value, 1); /* it wants to be told */
	case SCARDD_TAG_IFD_PRESENCE_ANYTIME: /* its presence reads the slot, under the slot's lock */
		return put_byte(Length, Value, !inst->cfg.no_presence_anytime);
	case TAG_IFD_POLLING_THREAD_WITH_TIMEOUT: {
		if (inst->cfg.no_events)
			return IFD_ERROR_TAG;
		RESPONSECODE (*fn)(DWORD, int) = wait_event;
		return put_bytes(Length, Value, &fn, sizeof(fn));
	}
	case TAG_IFD_STOP_POLLING_THREAD: {
		if (inst->cfg.no_events)
			return IFD_ERROR_TAG;
		RESPONSECODE (*fn)(DWORD) = stop_wait;
		return put_bytes(Length, Value, &fn, sizeof(fn));
	}
	case SCARD_ATTR_VENDOR_NAME: {
		static const char name[] = "scardd";
		return put_bytes(Length, Value, name, sizeof(name));
	}
	case SCARD_ATTR_VENDOR_IFD_TYPE: {
		static const char type[] = "ifd-virtual";
		return put_bytes(Length, Value, type, sizeof(type));
	}
	case SCARD_ATTR_ICC_PRESENCE: {
		pthread_mutex_lock(&s->lock);
		unsigned present = s->card ? 2 : 0; /* 2: present (and, being virtual, held) */
		pthread_mutex_unlock(&s->lock);
		return put_byte(Length, Value, present);
	}
	case SCARD_ATTR_ICC_INTERFACE_STATUS: {
		pthread_mutex_lock(&s->lock);
		unsigned active = s->card && s->powered;
		pthread_mutex_unlock(&s->lock);
		return put_byte(Length, Value, active);
	}
	case SCARD_ATTR_VIRTUAL_CONTROL: {
		char text[256];
		int n = snprintf(text, sizeof(text), "slot=%u control=%s", slot,
				 inst->cfg.control ? inst->cfg.control : "");
		return put_bytes(Length, Value, text, (size_t)n + 1);
	}
	default: return IFD_ERROR_TAG;
	}
}

RESPONSECODE IFDHSetCapabilities(DWORD Lun, DWORD Tag, DWORD Length, PUCHAR Value)
{
	struct vinstance *inst = find_instance(Lun);
	if (!inst || (Lun & 0xFFFF) >= inst->n_slots)
		return IFD_NO_SUCH_DEVICE;
	if (Tag != TAG_IFD_DEVICE_REMOVED)
		return IFD_ERROR_TAG;
	if (Length >= 1 && Value && Value[0] && !inst->unplugged) {
		inst->unplugged = true;
		say(PRIO_INFO, "%s: told the device was removed", inst->source);
	}
	return IFD_SUCCESS;
}

RESPONSECODE IFDHSetProtocolParameters(DWORD Lun, DWORD Protocol, UCHAR Flags, UCHAR PTS1,
				       UCHAR PTS2, UCHAR PTS3)
{
	(void)Flags;
	(void)PTS1;
	(void)PTS2;
	(void)PTS3;
	struct vslot *s = find_slot(Lun);
	if (!s)
		return IFD_NO_SUCH_DEVICE;
	return vslot_set_protocol(s, Protocol);
}

RESPONSECODE IFDHPowerICC(DWORD Lun, DWORD Action, PUCHAR Atr, PDWORD AtrLength)
{
	struct vinstance *inst = find_instance(Lun);
	struct vslot *s = find_slot(Lun);
	if (!s || device_gone(inst)) {
		if (AtrLength)
			*AtrLength = 0;
		return IFD_NO_SUCH_DEVICE;
	}
	if (s->atr_delay_ms && Action != IFD_POWER_DOWN)
		slow_card(inst, s->atr_delay_ms);
	RESPONSECODE rc = vslot_power(s, Action, Atr, AtrLength);
	if (rc == IFD_ERROR_POWER_ACTION)
		say(PRIO_INFO, "reader %lu: the card is muted and does not answer to reset",
		    (unsigned long)(Lun & 0xFFFF));
	return rc;
}

RESPONSECODE IFDHTransmitToICC(DWORD Lun, SCARD_IO_HEADER SendPci, PUCHAR TxBuffer, DWORD TxLength,
			       PUCHAR RxBuffer, PDWORD RxLength, PSCARD_IO_HEADER RecvPci)
{
	struct vinstance *inst = find_instance(Lun);
	struct vslot *s = find_slot(Lun);
	if (!s || device_gone(inst)) {
		*RxLength = 0;
		return IFD_NO_SUCH_DEVICE;
	}
	if (s->delay_ms) {
		say(PRIO_DEBUG, "reader %lu: this transmit takes %u ms",
		    (unsigned long)(Lun & 0xFFFF), s->delay_ms);
		slow_card(inst, s->delay_ms);
	}
	RESPONSECODE rc = vslot_transmit(s, SendPci.Protocol, TxBuffer, TxLength, RxBuffer,
					 RxLength);
	if (s->delay_ms)
		say(PRIO_DEBUG, "reader %lu: the slow transmit is done",
		    (unsigned long)(Lun & 0xFFFF));
	if (device_gone(inst)) { /* unplugged while the card worked: the answer is lost */
		*RxLength = 0;
		return IFD_NO_SUCH_DEVICE;
	}
	if (RecvPci) {
		RecvPci->Protocol = SendPci.Protocol;
		RecvPci->Length = sizeof(*RecvPci);
	}
	return rc;
}

RESPONSECODE IFDHControl(DWORD Lun, DWORD dwControlCode, PUCHAR TxBuffer, DWORD TxLength,
			 PUCHAR RxBuffer, DWORD RxLength, LPDWORD pdwBytesReturned)
{
	(void)TxBuffer;
	(void)TxLength;
	(void)RxBuffer;
	(void)RxLength;
	if (pdwBytesReturned)
		*pdwBytesReturned = 0;
	if (!find_slot(Lun) || device_gone(find_instance(Lun)))
		return IFD_NO_SUCH_DEVICE;
	if (dwControlCode == CM_IOCTL_GET_FEATURE_REQUEST_CODE)
		return IFD_SUCCESS; /* no PIN pad, no other features: an empty list */
	return IFD_ERROR_NOT_SUPPORTED;
}

RESPONSECODE IFDHICCPresence(DWORD Lun)
{
	struct vslot *s = find_slot(Lun);
	if (!s)
		return IFD_NO_SUCH_DEVICE;
	return vslot_presence(s);
}

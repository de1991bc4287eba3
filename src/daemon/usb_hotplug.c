/* USB readers through libudev (usb_hotplug.h). */
#include "usb_hotplug.h"

#include "config.h"

#include <stdlib.h>

#include "log.h"

#ifndef HAVE_LIBUDEV

struct usb_hotplug *usb_hotplug_start(const struct usb_hotplug_config *cfg)
{
	(void)cfg;
	log_info("built without libudev: no USB readers (reader.conf.d only)");
	return NULL;
}

void usb_hotplug_rescan(struct usb_hotplug *hp)
{
	(void)hp;
}

void usb_hotplug_free(struct usb_hotplug *hp)
{
	(void)hp;
}

#else

#include <errno.h>
#include <grp.h>
#include <ifdhandler.h>
#include <libudev.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle.h"
#include "device.h"
#include "driver.h"
#include "event_loop.h"
#include "reader_names.h"

/* pcscd's PCSCLITE_HP_BASE_PORT: the channel a driver without
 * IFDHCreateChannelByName gets for the n-th USB reader. */
#define HP_BASE_PORT 0x200000u
/* Failures remembered so each is logged once; the oldest go first. */
#define MAX_FAILURES 256
/* Events taken per wake-up before the loop serves others again. */
#define EVENTS_PER_WAKE 256

/* One USB interface that is, or is being made, a reader. */
struct usb_reader {
	struct usb_hotplug *hp;
	char *sysname;                     /* the interface ("1-2:1.0"), what its events name */
	char *devnode;                     /* its device's node, /dev/bus/usb/BBB/DDD */
	char *device;                      /* the driver's device string */
	char *name;                        /* the reader name before " XX YY" */
	const char *friendly;              /* its bundle's ifdFriendlyName */
	unsigned channel;                  /* HP_BASE_PORT + its tracking number */
	const struct bundle *bundle;       /* the driver tried now */
	const struct bundle *class_bundle; /* tried next if that one fails, or NULL */
	struct device *dev;                /* NULL once its open failed */
	unsigned seen;                     /* the rescan that last saw it */
	struct usb_reader *next;
};

/* A failure already logged: where (a device "1-2", or a bundle) and its cause. */
struct usb_failure {
	char *scope;
	char *cause;
	bool device; /* forgotten when the device leaves */
	struct usb_failure *next;
};

struct usb_hotplug {
	struct usb_hotplug_config cfg;
	struct udev *udev;
	struct udev_monitor *monitor;
	int fd;
	struct usb_reader *readers;
	struct usb_failure *failures;
	size_t n_failures;
	unsigned scan; /* rescan generation */
};

/* ---- failures, logged once each ---- */

/* The device of an interface: "1-2:1.0" -> "1-2" (the kernel's naming). */
static size_t device_part(const char *sysname)
{
	return strcspn(sysname, ":");
}

static void free_failure(struct usb_failure *f)
{
	free(f->scope);
	free(f->cause);
	free(f);
}

/* True the first time (scope, cause) is seen: log it at error level then. */
static bool first_failure(struct usb_hotplug *hp, const char *scope, size_t scope_len, bool device,
			  const char *cause)
{
	for (struct usb_failure *f = hp->failures; f; f = f->next)
		if (strlen(f->scope) == scope_len && !strncmp(f->scope, scope, scope_len) &&
		    !strcmp(f->cause, cause))
			return false;
	struct usb_failure *f = calloc(1, sizeof(*f));
	if (!f || !(f->scope = strndup(scope, scope_len)) || !(f->cause = strdup(cause))) {
		if (f)
			free(f->scope);
		free(f);
		return true;
	}
	f->device = device;
	f->next = hp->failures;
	hp->failures = f;
	if (++hp->n_failures > MAX_FAILURES) {
		struct usb_failure **p = &hp->failures;
		while ((*p)->next)
			p = &(*p)->next;
		free_failure(*p);
		*p = NULL;
		hp->n_failures--;
	}
	return true;
}

/* Once per plugged device (all its interfaces) and cause. */
static bool first_device_failure(struct usb_hotplug *hp, const char *sysname, const char *cause)
{
	return first_failure(hp, sysname, device_part(sysname), true, cause);
}

/* The device left (or works now): its next failure is news again. */
static void forget_failures(struct usb_hotplug *hp, const char *sysname)
{
	size_t n = device_part(sysname);
	for (struct usb_failure **p = &hp->failures; *p;) {
		struct usb_failure *f = *p;
		if (f->device && strlen(f->scope) == n && !strncmp(f->scope, sysname, n)) {
			*p = f->next;
			free_failure(f);
			hp->n_failures--;
		} else {
			p = &f->next;
		}
	}
}

/* ---- tracked interfaces ---- */

static struct usb_reader *find_reader(struct usb_hotplug *hp, const char *sysname)
{
	for (struct usb_reader *r = hp->readers; r; r = r->next)
		if (!strcmp(r->sysname, sysname))
			return r;
	return NULL;
}

/* Forgets r; its device, if any, is the caller's to take away first. */
static void drop_reader(struct usb_hotplug *hp, struct usb_reader *r)
{
	for (struct usb_reader **p = &hp->readers; *p; p = &(*p)->next) {
		if (*p == r) {
			*p = r->next;
			break;
		}
	}
	if (r->dev) {
		r->dev->opened = NULL; /* nobody to tell any more */
		r->dev->owner = NULL;
	}
	free(r->sysname);
	free(r->devnode);
	free(r->device);
	free(r->name);
	free(r);
}

/* pcscd's port for the n-th USB reader: the lowest number no tracked one has. */
static unsigned free_channel(const struct usb_hotplug *hp)
{
	for (unsigned ch = HP_BASE_PORT;; ch++) {
		bool used = false;
		for (const struct usb_reader *r = hp->readers; r && !used; r = r->next)
			used = r->channel == ch;
		if (!used)
			return ch;
	}
}

/* ---- opening, and what a failure means ---- */

static bool start_driver(struct usb_reader *r);

static const char *user_name(uid_t uid, char *buf, size_t cap)
{
	const struct passwd *pw = getpwuid(uid);
	if (pw)
		snprintf(buf, cap, "%s", pw->pw_name);
	else
		snprintf(buf, cap, "%u", (unsigned)uid);
	return buf;
}

static const char *group_name(gid_t gid, char *buf, size_t cap)
{
	const struct group *gr = getgrgid(gid);
	if (gr)
		snprintf(buf, cap, "%s", gr->gr_name);
	else
		snprintf(buf, cap, "%u", (unsigned)gid);
	return buf;
}

/*
 * The driver did not open the interface. A node the daemon may not open is
 * the usual cause (libccid then answers IFD_NO_SUCH_DEVICE too, having
 * logged LIBUSB_ERROR_ACCESS): say so, and what fixes it.
 */
static void report_failure(struct usb_reader *r, long driver_rc)
{
	struct usb_hotplug *hp = r->hp;
	if (access(r->devnode, R_OK | W_OK) != 0) {
		int err = errno;
		if (err == ENOENT || err == ENOTDIR) {
			log_debug("USB device %s is gone (%s)", r->devnode, r->name);
			return;
		}
		if (!first_device_failure(hp, r->sysname, "access")) {
			log_debug("%s: still no access to %s", r->name, r->devnode);
			return;
		}
		struct stat st;
		char user[64], owner[64], group[64], mode[200] = "";
		if (stat(r->devnode, &st) == 0)
			snprintf(mode, sizeof(mode), " (mode %04o, owner %s, group %s)",
				 (unsigned)(st.st_mode & 07777),
				 user_name(st.st_uid, owner, sizeof(owner)),
				 group_name(st.st_gid, group, sizeof(group)));
		char mine[64];
		group_name(getegid(), mine, sizeof(mine));
		log_error(
			"USB device %s at %s: its driver %s cannot open it (%s): scardd runs as %s "
			"(group %s), and %s%s refuses that: %s. Fix: a udev rule giving group %s "
			"read-write access to the device (udev/92-scardd.rules does it for group "
			"pcscd; README, \"USB readers\"), then replug the reader or run `udevadm "
			"trigger`",
			r->friendly, r->devnode, r->bundle->lib_path, r->device,
			user_name(geteuid(), user, sizeof(user)), mine, r->devnode, mode,
			strerror(err), mine);
		return;
	}
	if (driver_rc == IFD_NO_SUCH_DEVICE) {
		/* as pcscd: an interface its driver does not serve, or a device that left */
		log_debug("%s: %s does not serve %s", r->name, r->bundle->lib_path, r->device);
		return;
	}
	char cause[64];
	snprintf(cause, sizeof(cause), "driver %ld", driver_rc);
	if (!first_device_failure(hp, r->sysname, cause)) {
		log_debug("%s: %s failed again (code %ld)", r->name, r->device, driver_rc);
		return;
	}
	log_error("USB reader %s: %s could not open %s (IFD code %ld); the driver's own lines "
		  "above say why (--debug shows them all). It is tried again on the device's next "
		  "udev event or a rescan (scardd --hotplug)",
		  r->name, r->bundle->lib_path, r->device, driver_rc);
}

static void on_opened(void *owner, struct device *dev, long driver_rc)
{
	struct usb_reader *r = owner;
	(void)dev;
	if (driver_rc == IFD_SUCCESS) {
		log_info("USB reader %s: %s opened %s", r->name, r->bundle->lib_path, r->device);
		forget_failures(r->hp, r->sysname);
		return;
	}
	r->dev = NULL; /* freed by device.c after this call */
	/* pcscd's order: the vendor's driver, then the class driver if it lists the device */
	if (driver_rc != IFD_NO_SUCH_DEVICE && r->class_bundle && r->bundle != r->class_bundle) {
		log_info("%s: %s could not open %s (code %ld); trying the class driver %s", r->name,
			 r->bundle->lib_path, r->device, driver_rc, r->class_bundle->lib_path);
		r->bundle = r->class_bundle;
		if (start_driver(r))
			return;
	}
	report_failure(r, driver_rc);
	drop_reader(r->hp, r);
}

/* Loads r's driver and adds its device; false (nothing added) on failure. */
static bool start_driver(struct usb_reader *r)
{
	char err[512];
	struct driver *drv = driver_load(r->bundle->lib_path, err, sizeof(err));
	if (!drv) {
		/* a bundle's problem, not a device's: said once while scardd runs */
		const char *path = r->bundle->path;
		if (first_failure(r->hp, path, strlen(path), false, "load"))
			log_error("USB reader %s: the driver bundle %s cannot be used: %s", r->name,
				  path, err);
		else
			log_debug("USB reader %s: %s still cannot be used", r->name, path);
		return false;
	}
	struct device_spec spec = {
		.drv = drv,
		.friendly = r->name,
		.device_name = r->device,
		.channel_id = r->channel,
		.hotplug = true,
		.opened = on_opened,
		.owner = r,
	};
	r->dev = devices_add_spec(r->hp->cfg.devices, &spec);
	return r->dev;
}

/* ---- what udev says ---- */

static bool hex_attr(struct udev_device *dev, const char *name, unsigned max, unsigned *out)
{
	const char *text = udev_device_get_sysattr_value(dev, name);
	if (!text)
		return false;
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 16);
	if (end == text || errno || v > max)
		return false;
	*out = (unsigned)v;
	return true;
}

/* A device with a CCID interface that no bundle lists: worth one line. */
static void note_unlisted(struct usb_hotplug *hp, struct udev_device *itf, const char *sysname,
			  unsigned vid, unsigned pid, const char *devnode)
{
	unsigned cls;
	if (!hex_attr(itf, "bInterfaceClass", 0xFF, &cls) || cls != 0x0B) {
		log_debug("USB device %04x:%04x at %s: no driver bundle lists it", vid, pid,
			  devnode);
		return;
	}
	if (first_device_failure(hp, sysname, "unlisted"))
		log_info(
			"USB device %04x:%04x at %s has a CCID interface but no driver bundle in %s "
			"lists it: not a reader. libccid opens only the devices its Info.plist "
			"lists; a newer libccid may know it",
			vid, pid, devnode, hp->cfg.drivers_dir);
}

/* An interface that may be a reader: pcscd's HPAddDevice. */
static void consider(struct usb_hotplug *hp, struct udev_device *itf)
{
	const char *devtype = udev_device_get_devtype(itf);
	const char *sysname = udev_device_get_sysname(itf);
	if (!devtype || strcmp(devtype, "usb_interface") != 0 || !sysname)
		return;
	struct usb_reader *known = find_reader(hp, sysname);
	if (known) {
		known->seen = hp->scan;
		return; /* already a reader, or being made one */
	}
	struct udev_device *parent = udev_device_get_parent_with_subsystem_devtype(itf, "usb",
										   "usb_device");
	const char *devnode = parent ? udev_device_get_devnode(parent) : NULL;
	unsigned vid, pid;
	if (!devnode || !hex_attr(parent, "idVendor", 0xFFFF, &vid) ||
	    !hex_attr(parent, "idProduct", 0xFFFF, &pid)) {
		log_debug("USB interface %s: its device is gone or has no node", sysname);
		return;
	}
	const struct bundle_device *entry;
	const struct bundle *class_bundle;
	const struct bundle *b = bundle_find_driver(hp->cfg.bundles, (uint16_t)vid, (uint16_t)pid,
						    &entry, &class_bundle);
	if (!b) {
		note_unlisted(hp, itf, sysname, vid, pid, devnode);
		return;
	}
	/* bInterfaceNumber is hex in sysfs (pcscd reads it as decimal, the same below 10) */
	unsigned ifnum = 0;
	hex_attr(itf, "bInterfaceNumber", 0xFF, &ifnum);
	const char *iface = hp->cfg.name_interface ? udev_device_get_sysattr_value(itf, "interface")
						   : NULL;
	const char *serial = hp->cfg.name_serial ? udev_device_get_sysattr_value(parent, "serial")
						 : NULL;

	struct usb_reader *r = calloc(1, sizeof(*r));
	if (!r || !(r->sysname = strdup(sysname)) || !(r->devnode = strdup(devnode)) ||
	    !(r->name = reader_name_usb(entry->friendly_name, iface, serial)) ||
	    asprintf(&r->device, "usb:%04x/%04x:libudev:%u:%s", entry->vendor_id, entry->product_id,
		     ifnum, devnode) < 0) {
		log_error("out of memory: USB interface %s not added", sysname);
		if (r) {
			r->device = NULL;
			free(r->sysname);
			free(r->devnode);
			free(r->name);
		}
		free(r);
		return;
	}
	r->hp = hp;
	r->friendly = entry->friendly_name;
	r->bundle = b;
	r->class_bundle = class_bundle;
	r->channel = free_channel(hp);
	r->seen = hp->scan;
	r->next = hp->readers;
	hp->readers = r;
	log_debug("USB interface %s (%04x:%04x at %s): %s with %s", sysname, vid, pid, devnode,
		  r->name, b->lib_path);
	if (!start_driver(r))
		drop_reader(hp, r);
}

static void unplugged(struct usb_hotplug *hp, const char *sysname)
{
	forget_failures(hp, sysname);
	struct usb_reader *r = find_reader(hp, sysname);
	if (!r)
		return;
	log_info("USB reader %s: %s unplugged", r->name, r->devnode);
	if (r->dev)
		devices_unplug(hp->cfg.devices, r->dev);
	drop_reader(hp, r);
}

static void on_event(struct event_loop *loop, int fd, void *data, int mask)
{
	struct usb_hotplug *hp = data;
	(void)loop;
	(void)fd;
	(void)mask;
	for (int i = 0; i < EVENTS_PER_WAKE; i++) {
		struct udev_device *dev = udev_monitor_receive_device(hp->monitor);
		if (!dev)
			return;
		const char *action = udev_device_get_action(dev);
		const char *sysname = udev_device_get_sysname(dev);
		log_debug("udev: %s %s", action ? action : "?", sysname ? sysname : "?");
		if (action && sysname && !strcmp(action, "remove"))
			unplugged(hp, sysname);
		else if (action && (!strcmp(action, "add") || !strcmp(action, "change")))
			consider(hp, dev);
		udev_device_unref(dev);
	}
}

/* Every USB interface now present, in udev's order, as pcscd's start-up scan. */
static void scan(struct usb_hotplug *hp)
{
	hp->scan++;
	struct udev_enumerate *en = udev_enumerate_new(hp->udev);
	if (!en || udev_enumerate_add_match_subsystem(en, "usb") < 0 ||
	    udev_enumerate_scan_devices(en) < 0) {
		log_error("cannot list USB devices through udev: %s", strerror(errno));
		udev_enumerate_unref(en);
		return;
	}
	struct udev_list_entry *e;
	udev_list_entry_foreach(e, udev_enumerate_get_list_entry(en))
	{
		struct udev_device *dev = udev_device_new_from_syspath(hp->udev,
								       udev_list_entry_get_name(e));
		if (dev) {
			consider(hp, dev);
			udev_device_unref(dev);
		}
	}
	udev_enumerate_unref(en);
}

struct usb_hotplug *usb_hotplug_start(const struct usb_hotplug_config *cfg)
{
	if (!cfg->bundles || cfg->bundles->n == 0) {
		log_info("no driver bundle in %s: no USB readers", cfg->drivers_dir);
		return NULL;
	}
	struct usb_hotplug *hp = calloc(1, sizeof(*hp));
	if (!hp) {
		log_error("out of memory: no USB readers");
		return NULL;
	}
	hp->cfg = *cfg;
	hp->fd = -1;
	hp->udev = udev_new();
	hp->monitor = hp->udev ? udev_monitor_new_from_netlink(hp->udev, "udev") : NULL;
	/* Watch before the first scan, so nothing plugged meanwhile is missed. */
	if (!hp->monitor ||
	    udev_monitor_filter_add_match_subsystem_devtype(hp->monitor, "usb", "usb_interface") <
		    0 ||
	    udev_monitor_enable_receiving(hp->monitor) < 0 ||
	    (hp->fd = udev_monitor_get_fd(hp->monitor)) < 0 ||
	    el_add_fd(cfg->loop, hp->fd, EL_READ, on_event, hp) < 0) {
		log_error("cannot watch USB devices through udev (%s): no USB readers. Is /sys "
			  "mounted and udev running?",
			  strerror(errno));
		hp->fd = -1;
		usb_hotplug_free(hp);
		return NULL;
	}
	scan(hp);
	return hp;
}

void usb_hotplug_rescan(struct usb_hotplug *hp)
{
	if (!hp)
		return;
	log_info("rescanning USB devices");
	scan(hp);
	/* A reader whose interface is gone without an event leaves now. */
	for (struct usb_reader *r = hp->readers, *next; r; r = next) {
		next = r->next;
		if (r->seen != hp->scan)
			unplugged(hp, r->sysname);
	}
}

void usb_hotplug_free(struct usb_hotplug *hp)
{
	if (!hp)
		return;
	if (hp->fd >= 0)
		el_del_fd(hp->cfg.loop, hp->fd);
	while (hp->readers)
		drop_reader(hp, hp->readers);
	while (hp->failures) {
		struct usb_failure *f = hp->failures;
		hp->failures = f->next;
		free_failure(f);
	}
	udev_monitor_unref(hp->monitor);
	udev_unref(hp->udev);
	free(hp);
}

#endif

/*
 * libFuzzer: a policy file of any bytes parses or is refused with a
 * FILE:LINE reason; what parses decides consistently for clients and reader
 * names, the input's own last line among them (an executable, an app id, a
 * reader name a hostile client or driver chose).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "peer_identity.h"
#include "policy.h"

/* No system databases: a few names, found at once. */
static bool user(const char *name, uid_t *uid)
{
	if (strcmp(name, "alice") && strcmp(name, "root"))
		return false;
	*uid = name[0] == 'r' ? 0 : 1000;
	return true;
}

static bool group(const char *name, gid_t *gid)
{
	if (strcmp(name, "scard"))
		return false;
	*gid = 500;
	return true;
}

static const struct policy_names names = { user, group };

static void check(const struct policy *p, const struct peer_identity *id, const char *reader)
{
	bool admitted = policy_admits(p, id, NULL);
	const struct policy_rule *r = policy_decide(p, id, reader);
	uint32_t rights = r ? policy_rule_rights(r) : 0;
	/* a client refused outright gets nothing on any reader */
	if (rights && !admitted)
		__builtin_trap();
	/* whatever may be used may be seen */
	if (rights && !(rights & POLICY_LIST))
		__builtin_trap();
	if (r && (!policy_rule_fits_peer(r, id) || !policy_rule_fits_reader(r, reader)))
		__builtin_trap();
	if (r && (policy_rule_line(r) < 1 || (rights & ~(POLICY_ALL | POLICY_CONTROL_SOME))))
		__builtin_trap();
	if (r && (rights & POLICY_CONTROL) && !policy_rule_allows_control(r, 0x42000D48))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[600];
	struct policy *p = policy_parse((const char *)data, size, "fuzz", &names, err, sizeof(err));
	if (!p) {
		if (strncmp(err, "fuzz:", 5) != 0)
			__builtin_trap();
		return 0;
	}
	/* the last line, cut short and without NULs, as a name from outside */
	char word[256];
	size_t start = size;
	while (start > 0 && data[start - 1] != '\n' && size - start < sizeof(word) - 1)
		start--;
	size_t n = 0;
	for (size_t i = start; i < size; i++)
		if (data[i])
			word[n++] = (char)data[i];
	word[n] = '\0';

	gid_t groups[] = { 500, 27 };
	struct peer_identity ids[] = {
		{ .pid = 1, .uid = 0, .gid = 0, .exe = "/usr/sbin/pcscd" },
		{ .pid = 2,
		  .uid = 1000,
		  .gid = 1000,
		  .groups = groups,
		  .n_groups = 2,
		  .exe = word },
		{ .pid = 3, .uid = 1000, .gid = 1000, .sandbox = PEER_FLATPAK, .app = word },
		{ .pid = 4, .uid = 1001, .gid = 1001, .sandbox = PEER_FLATPAK },
		{ .pid = 5, .uid = 1000, .gid = 1000, .sandbox = PEER_SNAP, .app = "chromium" },
		{ .pid = 6, .uid = 0, .gid = 0, .sandbox = PEER_CONTAINER, .container = "docker" },
		{ .pid = 7, .uid = 1000, .gid = 1000, .gone = true },
	};
	const char *readers[] = { "Virtual Reader 00 00", "Yubico YubiKey OTP+FIDO+CCID 00 00", "",
				  word };
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		for (size_t k = 0; k < sizeof(readers) / sizeof(readers[0]); k++)
			check(p, &ids[i], readers[k]);
	if (policy_admits(p, &ids[6], NULL) || policy_decide(p, &ids[6], readers[0]))
		__builtin_trap(); /* gone: nothing */
	/* a glob of the input against itself and the reader names ends, whatever it is */
	(void)policy_glob(word, word);
	(void)policy_glob(word, readers[1]);
	policy_free(p);
	return 0;
}

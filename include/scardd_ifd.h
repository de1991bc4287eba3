/*
 * scardd's own driver capabilities, beyond pcsc-lite's ifdhandler.h. A
 * driver answers them through IFDHGetCapabilities; pcscd never asks, so a
 * driver that offers them stays a plain pcsc-lite driver.
 */
#ifndef SCARDD_IFD_H
#define SCARDD_IFD_H

/*
 * One byte, 1: IFDHICCPresence may be called at any time, from another
 * thread, while any other call of the driver runs (the answer does not use
 * the device's command channel). scardd then watches card presence apart
 * from the requests: a card pulled while the driver serves another client's
 * long command is reported at once, not when the command ends.
 */
#define SCARDD_TAG_IFD_PRESENCE_ANYTIME 0x0007A1F1

#endif

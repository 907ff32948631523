/* fsdir.h — creating the directories a service keeps its state in.
 *
 * One `mkdir -p` for every module that owns a directory (the saga's timers,
 * the payment attempts, the mail markers and Maildir, the CLI's data
 * directory): mode 0700, since what lives there (LMDB files, emails with
 * confirmation links, the embedded server's store) is for this user only. */
#ifndef ORION_FSDIR_H
#define ORION_FSDIR_H

#include "orn.h"

/* Creates path and every missing parent with mode 0700 (less the umask);
 * directories that exist already are left as they are. ORN_OK if path is a
 * directory afterwards (a symlink to one counts); ORN_EINVAL for NULL or "";
 * ORN_EIO if a component cannot be made or something that is not a
 * directory is in the way; ORN_ENOMEM. */
orn_rc orn_make_dirs(const char *path);

#endif
